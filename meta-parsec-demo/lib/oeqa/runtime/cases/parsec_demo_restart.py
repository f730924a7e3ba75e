#
# SPDX-License-Identifier: MIT
#
"""Handshakes across a restart of the Parsec service: those that ran while it was down fail
closed and say why, the others pass, and another application's key survives."""

import re
import shlex
import time

import parsec_demo_machine as machine
from oeqa.core.decorator.depends import OETestDepends
from oeqa.core.decorator.oetimeout import OETimeout
from oeqa.runtime.parsec_demo_case import ParsecDemoCase

RESTART_DIR = "/tmp/parsec-demo-restart"
#: Seconds the service stays down: several handshakes start and end in that window.
HELD_DOWN = 6
#: One line per handshake in <dir>/index: number, start and end (uptime, seconds), exit status;
#: its output in <dir>/<number>.out. Stops when <dir>/stop exists (or after 300 handshakes).
HANDSHAKE_LOOP = """dir=$1
i=0
while [ ! -e $dir/stop ] && [ $i -lt 300 ]; do
    i=$((i + 1))
    work=$(mktemp -d)
    read began _ < /proc/uptime
    (cd $work && exec timeout 60 @CLIENT@) > $dir/$i.out 2>&1
    status=$?
    read ended _ < /proc/uptime
    rm -rf $work
    echo "$i $began $ended $status" >> $dir/index
done
""".replace("@CLIENT@", shlex.join(machine.client_command()))


class ParsecRestartTest(ParsecDemoCase):
    @OETestDepends(["parsec_demo_handshake.TlsHandshakeTest.test_handshake_on_the_host"])
    @OETimeout(600)
    def test_handshakes_survive_a_parsec_restart(self):
        """Handshakes run back to back while the service stops, stays down for a while and
        starts again: those that ran while it was down fail closed (the driver says it cannot
        reach the service), those around the stop and the start pass or fail cleanly, the ones
        after it answers again pass; another application's key is untouched."""
        unit = self.service_unit()
        other = "runuser -u nobody -- "
        self.run_ok(other + "parsec-tool create-ecc-key -k validation-other-app")
        self.start_server()
        loop = None
        try:
            self.run_ok("rm -rf %s && mkdir -p %s" % (RESTART_DIR, RESTART_DIR))
            self.run_ok("cat > %s/loop.sh << 'EOF'\n%sEOF" % (RESTART_DIR, HANDSHAKE_LOOP))
            loop = self.run_ok(
                "nohup sh %s/loop.sh %s > /dev/null 2>&1 < /dev/null & echo $!"
                % (RESTART_DIR, RESTART_DIR)
            )
            self.wait_for_handshakes(lambda runs: len(runs) >= 2, "two handshakes before the stop")
            # Stop, hold down, start; the machine's uptime at each step.
            times = self.run_ok(
                "read t0 _ < /proc/uptime; systemctl stop %s; read t1 _ < /proc/uptime; "
                "sleep %d; read t2 _ < /proc/uptime; systemctl start %s; "
                "read t3 _ < /proc/uptime; echo $t0 $t1 $t2 $t3" % (unit, HELD_DOWN, unit),
                120,
            )
            stopping, stopped, starting, _ = [float(t) for t in times.split()]
            back = None
            for _ in range(60):
                status, output = self.target.run(
                    "parsec-tool ping > /dev/null 2>&1 && read t _ < /proc/uptime && echo $t"
                )
                if status == 0:
                    back = float(output)
                    break
                time.sleep(1)
            self.assertIsNotNone(back, "the service did not answer within 60 s of its start")
            self.wait_for_handshakes(
                lambda runs: len([r for r in runs if r[1] > back]) >= 3,
                "three handshakes after the service answered again",
            )
            self.run_ok("touch %s/stop" % RESTART_DIR)
            self.run_ok(
                "for i in $(seq 150); do kill -0 %s 2>/dev/null || exit 0; sleep 0.4; done; "
                "exit 1" % loop,
                120,
            )
            runs = self.handshakes()
            outputs = self.handshake_outputs()
            timeline = "\n".join("#%d %.2f-%.2f status %d" % run for run in runs)
            timeline += "\nstop %.2f, stopped %.2f, start %.2f, answering %.2f" % (
                stopping, stopped, starting, back
            )
            problems = []
            if not [r for r in runs if r[2] < stopping]:
                problems.append("no handshake ended before the stop")
            if not [r for r in runs if r[1] >= stopped and r[2] <= starting]:
                problems.append("no handshake ran while the service was down")
            for number, began, ended, status in runs:
                output = outputs.get(number)
                if output is None:
                    problem = "its output file is missing"
                elif began >= stopped and ended <= starting:
                    # Wholly while the service was down: it fails closed, and says why.
                    problem = machine.clean_failure_problem(status, output)
                    reach = "%s %s" % (machine.CANNOT_REACH, machine.PARSEC_SOCKET)
                    if problem is None and reach not in output:
                        problem = "no %r line" % reach
                elif ended < stopping or began > back or status == 0:
                    # Wholly before the stop, after the service answered again, or a pass.
                    problem = machine.handshake_problem(status, output)
                else:
                    # Around the stop or the start: a clean failure with the driver's line.
                    problem = machine.clean_failure_problem(status, output)
                    if problem is None and not machine.DRIVER_LINE.search(output):
                        problem = "no line of the driver saying why"
                if problem is not None:
                    problems.append(
                        "#%d (%.2f-%.2f, status %d): %s\n    %s"
                        % (number, began, ended, status, problem,
                           (output or "").strip().replace("\n", "\n    "))
                    )
            if problems:
                # The timeline first, the problems last: a truncated log keeps what failed.
                self.fail("timeline:\n%s\n%d problem(s):\n%s"
                          % (timeline, len(problems), "\n".join(problems)))
            self.run_ok("systemctl is-active %s" % unit)
            keys = self.run_ok(other + "parsec-tool list-keys")
            self.assertIn("validation-other-app", keys)
        finally:
            self.target.run("touch %s/stop" % RESTART_DIR)
            self.target.run("systemctl start %s" % unit)
            if loop:
                self.target.run("kill %s 2>/dev/null; true" % loop)
            self.stop_server()
            self.target.run(other + "parsec-tool delete-key -k validation-other-app")
            self.target.run("rm -rf %s" % RESTART_DIR)

    def handshakes(self):
        """The loop's handshakes so far: (number, start, end, status), uptime in seconds."""
        status, output = self.target.run("cat %s/index" % RESTART_DIR)
        runs = []
        for line in output.splitlines() if status == 0 else []:
            number, began, ended, code = line.split()
            runs.append((int(number), float(began), float(ended), int(code)))
        return runs

    def wait_for_handshakes(self, condition, what, seconds=240):
        deadline = time.time() + seconds
        while not condition(self.handshakes()):
            if time.time() > deadline:
                self.fail("%s did not happen within %d s: %s" % (what, seconds, self.handshakes()))
            time.sleep(1)

    def handshake_outputs(self):
        """Every handshake's output, read in one command (its status checked): {number: text}."""
        dump = self.run_ok(
            'cd %s && for f in *.out; do echo "=== restart-output ${f%%.out} ==="; cat "$f"; done'
            % RESTART_DIR
        )
        parts = re.split(r"^=== restart-output (\d+) ===\n?", dump + "\n", flags=re.M)
        return {int(number): text for number, text in zip(parts[1::2], parts[2::2])}

#
# SPDX-License-Identifier: MIT
#
"""What the RSE served: its records of PSA calls, the part of its logs a step wrote, the checks.

The RSE keeps two logs on the host: its console (the RSE model's, or the FVP's ``rse`` UART,
where the TF-M firmware's crypto service writes), and, for the model, the same calls as JSON
events. ``RseCall`` is one call read from either; ``LogWindow`` is the part of a log written
while a step ran; the checks say what keeps a window's calls from being a handshake's or a
client key's evidence. The toolkit (host mode, the dev VM, validation and its reports) and the
layer's oeqa cases (under testimage) all read the RSE through this module.

Only the standard library, in Python that a build host's python3 runs.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

SUCCESS = "PSA_SUCCESS"
#: The asymmetric operations of a handshake's verification, in the order the RSE serves them.
VERIFICATION = ("psa_import_key", "psa_verify_hash", "psa_destroy_key")
#: A console line of the crypto service: ``[Crypto] psa_verify_hash: key 0x... -> PSA_SUCCESS``.
CONSOLE_CALL = re.compile(r"\[Crypto\] (psa_\w+): (.*?) -> (.*)$")
#: An RSE comms trace of a crypto service call, all that TF-M at its debug level logs.
COMMS_CALL = re.compile(r"\[RSE-COMMS\] Received message:.*handle=0x40000100")
#: Where a case puts the calls it saw in testresults.json: oeqa's extraresults, under this
#: prefix and the diagram's name; ``parsec-demo report html`` draws them.
RESULT_PREFIX = "parsec_tls_demo.rse_calls."


@dataclass(frozen=True)
class RseCall:
    """One PSA call the RSE served: its function, its status (a new key counts as
    PSA_SUCCESS), the key it used or made, and what the log tells of the algorithm and of the
    key's type, size and lifetime."""

    function: str
    status: str
    key_id: int | None = None
    alg: str | None = None
    key_type: str | None = None
    bits: int | None = None
    lifetime: str | None = None
    client_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> RseCall:
        """The call of one of the model's JSON events (``kind`` = ``call``)."""
        return cls(
            function=str(event["function"]),
            status=str(event["status"]),
            key_id=event.get("key_id"),
            alg=event.get("alg"),
            key_type=event.get("key_type"),
            bits=event.get("bits"),
            lifetime=event.get("lifetime"),
            client_id=event.get("client_id"),
        )

    @classmethod
    def from_console(cls, line: str) -> RseCall | None:
        """The call a console line shows, or None for any other line."""
        match = CONSOLE_CALL.search(line)
        if not match:
            return None
        function, arguments, result = match.groups()

        def found(pattern: str) -> str | None:
            hit = re.search(pattern, arguments)
            return hit.group(1) if hit else None

        bits = found(r"bits=(\d+)")
        if result.startswith("key 0x"):
            key, status = result.split()[1], SUCCESS
        else:
            key, status = found(r"key (0x[0-9a-f]+)"), result.split()[0]
        return cls(
            function=function,
            status=status,
            key_id=int(key, 16) if key else None,
            alg=found(r"alg=(\S+)"),
            key_type=found(r"type=(\S+)"),
            bits=int(bits) if bits else None,
            lifetime=found(r"lifetime=(\S+)"),
        )

    def record(self) -> dict[str, Any]:
        """This call as a JSON object (the fields the log told)."""
        return {name: value for name, value in asdict(self).items() if value is not None}


def console_calls(text: str) -> list[RseCall]:
    """The PSA calls an RSE console shows, in order."""
    calls = (RseCall.from_console(line) for line in text.splitlines())
    return [call for call in calls if call is not None]


def event_calls(text: str) -> list[RseCall]:
    """The PSA calls of the model's JSON events (one object a line), in order."""
    records = (json.loads(line) for line in text.splitlines() if line.strip())
    return [RseCall.from_event(r) for r in records if r.get("kind") == "call"]


def comms_calls(text: str) -> int:
    """How many crypto service calls the RSE comms traces show."""
    return len(COMMS_CALL.findall(text))


def calls_of(calls: Iterable[RseCall], function: str, status: str | None = None) -> list[RseCall]:
    return [c for c in calls if c.function == function and (status is None or c.status == status)]


class LogWindow:
    """The part of a log file written during a with-block (``text``), in whole lines.

    ``quiet``: seconds the log must stay unchanged before the window closes, for a log that is
    written after the step's reply (the FVP's console reaches its log through telnet); at most
    ``settle`` seconds. A log that does not exist yet starts empty."""

    def __init__(self, path: str | os.PathLike[str], quiet: float = 0.0, settle: float = 15.0):
        self.path = os.fspath(path)
        self.quiet = quiet
        self.settle = settle
        self.start = 0
        self.text = ""

    def size(self) -> int:
        try:
            return os.path.getsize(self.path)
        except OSError:
            return 0

    def __enter__(self) -> LogWindow:
        self.start = self.size()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> str:
        """Wait for the log to settle, then read what the block wrote."""
        if self.quiet > 0:
            self._wait_until_quiet()
        try:
            with open(self.path, "rb") as log:
                log.seek(self.start)
                data = log.read()
        except OSError:
            data = b""
        self.text = data[: data.rfind(b"\n") + 1].decode(errors="replace")
        return self.text

    def _wait_until_quiet(self) -> None:
        deadline = time.monotonic() + self.settle
        size, quiet_since = self.size(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = self.size()
            if now != size:
                size, quiet_since = now, time.monotonic()
            elif time.monotonic() - quiet_since >= self.quiet:
                return


def verification_problem(calls: Sequence[RseCall], signatures: int) -> str | None:
    """What keeps ``calls`` from being the RSE's part of ``signatures`` verifications: one
    import, one successful verify and one destroy each, every key destroyed; or None."""
    functions = [c.function for c in calls]
    if functions != list(VERIFICATION) * signatures:
        return f"the RSE did not serve {signatures} verification(s): {functions}"
    failed = [c for c in calls if not c.ok]
    if failed:
        return f"calls failed in the RSE: {failed}"
    created = sorted(c.key_id or 0 for c in calls_of(calls, "psa_import_key"))
    destroyed = sorted(c.key_id or 0 for c in calls_of(calls, "psa_destroy_key"))
    if created != destroyed:
        return f"a key was left in the RSE: made {created}, destroyed {destroyed}"
    return None


def comms_problem(text: str, signatures: int) -> str | None:
    """For an RSE whose firmware logs only the RSE comms traces: too few crypto calls, or None."""
    count = comms_calls(text)
    if count < 3 * signatures:
        return f"{count} RSE crypto calls, fewer than {3 * signatures}"
    return None


def client_key_problem(calls: Sequence[RseCall], handshakes: int) -> str | None:
    """What keeps ``calls`` from showing a client key that never left the RSE, or None: one
    psa_generate_key, then that key's signatures (the CSR's and one per handshake, all
    successful), no export, and its destruction."""
    generated = calls_of(calls, "psa_generate_key", SUCCESS)
    if len(generated) != 1:
        return f"{len(generated)} successful psa_generate_key, expected 1"
    key = generated[0].key_id
    signatures = [(c.key_id, c.status) for c in calls_of(calls, "psa_sign_hash")]
    if signatures != [(key, SUCCESS)] * (1 + handshakes):
        return f"the client key's signatures {signatures}, expected {1 + handshakes} by {key}"
    if calls_of(calls, "psa_export_key"):
        return "a key was exported"
    if not [c for c in calls_of(calls, "psa_destroy_key", SUCCESS) if c.key_id == key]:
        return f"the key {key} was not destroyed"
    return None


def result_entry(calls: Sequence[RseCall]) -> dict[str, str]:
    """An extraresults entry (oeqa's form, as ptest's logs) holding ``calls`` as JSON."""
    return {"status": "PASSED", "log": json.dumps([c.record() for c in calls], sort_keys=True)}


def calls_of_entry(entry: Mapping[str, Any]) -> list[RseCall]:
    """The calls ``result_entry`` recorded."""
    return [RseCall.from_event(record) for record in json.loads(entry.get("log") or "[]")]

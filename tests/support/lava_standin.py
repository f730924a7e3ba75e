"""A stand-in for a LAVA server's XML-RPC API, for the pipeline's submit-and-collect job run
offline with the real lavacli: the calls that job makes, answered as LAVA answers them.

- ``system.version``: the server's version (lavacli shapes its options by it);
- ``scheduler.jobs.submit(definition)``: records the definition, returns the next job id;
- ``scheduler.jobs.show(id)``: the job, "Submitted" at the first call and "Finished" after
  (lavacli's ``jobs wait`` polls it);
- ``results.get_testjob_results_yaml(id)``: the results given at start, as LAVA's YAML.
"""

from __future__ import annotations

import threading
from typing import Any
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

import yaml

#: LAVA's results of a job, in the shape its results API exports them (trimmed).
LAVA_RESULTS = [
    {"id": "101", "job": "42", "suite": "lava", "name": "auto-login-action", "result": "pass",
     "level": "2.4.2", "metadata": {"duration": "3.20", "level": "2.4.2"}, "unit": "",
     "measurement": None, "logged": "2026-12-03 06:00:00", "url": "/results/42/lava/1"},
    {"id": "102", "job": "42", "suite": "1_parsec-tls-demo", "name": "parsec-ping",
     "result": "pass", "metadata": {"case": "parsec-ping", "definition": "1_parsec-tls-demo"}},
    {"id": "103", "job": "42", "suite": "1_parsec-tls-demo", "name": "tls-handshake-in-container",
     "result": "fail", "metadata": {"case": "tls-handshake-in-container"}},
    {"id": "104", "job": "42", "suite": "1_parsec-tls-demo", "name": "no-container-left",
     "result": "skip", "metadata": {}},
    {"id": "105", "job": "42", "suite": "lava", "name": "parsec_demo_rse_console",
     "result": "fail", "metadata": {"error_msg": "command failed", "error_type": "Test"}},
    {"id": "106", "job": "42", "suite": "lava", "name": "job", "result": "fail",
     "metadata": {"error_msg": "command failed", "error_type": "Test"}},
]  # fmt: skip


class _Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/RPC2",)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


class LavaStandin:
    def __init__(self, results: list[dict[str, Any]]) -> None:
        self.results = results
        self.submitted: dict[int, str] = {}
        self.shown: dict[int, int] = {}
        self.server = SimpleXMLRPCServer(
            ("127.0.0.1", 0), requestHandler=_Handler, logRequests=False, allow_none=True
        )
        self.server.register_function(lambda: "2023.01", "system.version")
        self.server.register_function(self.submit, "scheduler.jobs.submit")
        self.server.register_function(self.show, "scheduler.jobs.show")
        self.server.register_function(self.results_yaml, "results.get_testjob_results_yaml")
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LavaStandin:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def submit(self, definition: str) -> int:
        job_id = 4200 + len(self.submitted) + 1
        self.submitted[job_id] = definition
        return job_id

    def show(self, job_id: str) -> dict[str, Any]:
        number = int(job_id)
        self.shown[number] = self.shown.get(number, 0) + 1
        state = "Submitted" if self.shown[number] == 1 else "Finished"
        return {"id": number, "state": state, "health": "Complete" if state == "Finished" else ""}

    def results_yaml(self, job_id: str) -> str:
        assert int(job_id) in self.submitted
        text: str = yaml.safe_dump(self.results)
        return text

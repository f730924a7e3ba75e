"""What a good demo handshake looks like, wherever it ran (host mode or inside the dev VM):
the checks of the layer's oeqa cases (``parsec_demo_machine.handshake_problem``,
``parsec_demo_evidence.verification_problem``), with what the tests know beyond them: the
cipher suite the server's page names, each verification's key of its own, and the imported
keys' lifetime.
"""

from __future__ import annotations

import parsec_demo_evidence as evidence
import parsec_demo_machine as machine

from parsec_demo.demo.results import ClientRun


def assert_handshake_ok(run: ClientRun, cipher_suite: str) -> None:
    problem = machine.handshake_problem(run.returncode, run.output)
    assert problem is None, f"{problem}:\n{run.output}"
    assert f"<p>Successful connection using: {cipher_suite}</p>" in run.output


def assert_rse_evidence(run: ClientRun, signatures: int) -> None:
    """One import, one successful verify and one destroy per signature, nothing left over."""
    problem = evidence.verification_problem(run.calls, signatures)
    assert problem is None, problem
    for triple in zip(*[iter(run.calls)] * 3, strict=True):
        assert len({c.key_id for c in triple}) == 1, "each verification uses its own key"
    assert all(c.lifetime == "persistent" for c in run.served("psa_import_key"))

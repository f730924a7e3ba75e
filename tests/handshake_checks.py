"""What a good demo handshake looks like, wherever it ran (host mode or inside the dev VM):
the lines ``ssl_client1`` prints, the cipher suite the server's page names, and the RSE's
record of one import, one successful verification and one destroy per signature.

The layer's oeqa case states the same client lines for itself: it runs under testimage, where
this module does not exist.
"""

from __future__ import annotations

from parsec_demo.tls_demo import ClientRun

EXPECTED_LINES = [
    ". Seeding the random number generator... ok",
    ". Loading the CA root certificate ... ok",
    ". Connecting to tcp/127.0.0.1/4433... ok",
    ". Performing the SSL/TLS handshake... ok",
    ". Verifying peer X.509 certificate... ok",
    "18 bytes written",
    "<h2>Mbed TLS Test Server</h2>",
]


def assert_handshake_ok(run: ClientRun, cipher_suite: str) -> None:
    assert run.ok, run.output
    for line in EXPECTED_LINES:
        assert line in run.output, f"missing {line!r} in:\n{run.output}"
    assert f"<p>Successful connection using: {cipher_suite}</p>" in run.output


def assert_rse_evidence(run: ClientRun, signatures: int) -> None:
    """One import, one successful verify and one destroy per signature, nothing left over."""
    functions = [e["function"] for e in run.events]
    assert functions == ["psa_import_key", "psa_verify_hash", "psa_destroy_key"] * signatures
    assert all(e["status"] == "PSA_SUCCESS" for e in run.events), run.events
    for triple in zip(*[iter(run.events)] * 3, strict=True):
        assert len({e["key_id"] for e in triple}) == 1, "each verification uses its own key"
    assert all(e["lifetime"] == "persistent" for e in run.calls("psa_import_key"))

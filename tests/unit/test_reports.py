"""The HTML report of a validation run, read back as a browser would build it.

The inputs are recorded from a real run against the dev VM: its ``testresults.json`` and the RSE
model's events during the handshake test, plus the corrupted-certificate test's three calls.
The page must show the four lanes of the sequence diagram, for each PSA call one arrow pair
between the Parsec service and the RSE (the call, then its status) inside the client's request
to Parsec and its reply, and the test table with each case, its status and its duration.
tests/vm/test_validation.py applies the same reading to the page Chromium renders.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from parsec_demo_evidence import RseCall

from parsec_demo.validate import reports
from parsec_demo.validate.runner import CaseResult

#: testresults.json of a validation run of the dev image (runs/validate-*/report/).
RECORDED_RESULTS = r"""
{
    "runtime_parsec-demo-dev-image_parsec-demo-dev-amd64_20261202194825": {
        "configuration": {
            "DISTRO": "debian-bookworm",
            "IMAGE": "amd64-8c9ae447d6f73f2d",
            "IMAGE_BASENAME": "parsec-demo-dev-image",
            "LAYERS": "meta-parsec-demo",
            "MACHINE": "parsec-demo-dev-amd64",
            "STARTTIME": "20261202194825",
            "TEST_TYPE": "runtime"
        },
        "result": {
            "parsec_tls_demo.NegativeTest.test_a_corrupted_certificate_is_refused": {
                "duration": 2.87,
                "status": "PASSED"
            },
            "parsec_tls_demo.NegativeTest.test_handshakes_survive_a_parsec_restart": {
                "duration": 29.61,
                "status": "PASSED"
            },
            "parsec_tls_demo.ParsecServiceTest.test_list_providers": {
                "duration": 1.38,
                "status": "PASSED"
            },
            "parsec_tls_demo.ParsecServiceTest.test_ping": {
                "duration": 1.69,
                "status": "PASSED"
            },
            "parsec_tls_demo.ParsecServiceTest.test_service_active": {
                "duration": 1.35,
                "status": "PASSED"
            },
            "parsec_tls_demo.TlsHandshakeTest.test_handshake_in_a_container": {
                "duration": 10.61,
                "status": "PASSED"
            },
            "parsec_tls_demo.TlsHandshakeTest.test_handshake_on_the_host": {
                "duration": 2.81,
                "status": "PASSED"
            }
        }
    }
}
"""
#: rse-events.jsonl of the same run during test_handshake_on_the_host: the server
#: certificate's signature (SHA-256) and ServerKeyExchange's (SHA-512).
RECORDED_HANDSHAKE = r"""
{"alg": "RSA_PKCS1V15_SIGN(SHA_256)", "alg_id": 100663817, "bits": 2048, "client_id": 1, "duration_us": 8901, "function": "psa_import_key", "function_id": 515, "key_id": 1, "key_type": "RSA_PUBLIC_KEY", "key_type_id": 16385, "kind": "call", "lifetime": "persistent", "seq_num": 1, "status": "PSA_SUCCESS", "status_code": 0, "time": 1796240943.257839, "volatile_keys": 0}
{"alg": "RSA_PKCS1V15_SIGN(SHA_256)", "alg_id": 100663817, "bits": 2048, "client_id": 1, "duration_us": 561, "function": "psa_verify_hash", "function_id": 1795, "key_id": 1, "key_type": "RSA_PUBLIC_KEY", "key_type_id": 16385, "kind": "call", "seq_num": 2, "status": "PSA_SUCCESS", "status_code": 0, "time": 1796240943.284547, "volatile_keys": 0}
{"bits": 2048, "client_id": 1, "duration_us": 1118, "function": "psa_destroy_key", "function_id": 516, "key_id": 1, "key_type": "RSA_PUBLIC_KEY", "key_type_id": 16385, "kind": "call", "seq_num": 3, "status": "PSA_SUCCESS", "status_code": 0, "time": 1796240943.302578, "volatile_keys": 0}
{"alg": "RSA_PKCS1V15_SIGN(SHA_512)", "alg_id": 100663819, "bits": 2048, "client_id": 1, "duration_us": 1513, "function": "psa_import_key", "function_id": 515, "key_id": 2, "key_type": "RSA_PUBLIC_KEY", "key_type_id": 16385, "kind": "call", "lifetime": "persistent", "seq_num": 4, "status": "PSA_SUCCESS", "status_code": 0, "time": 1796240943.340486, "volatile_keys": 0}
{"alg": "RSA_PKCS1V15_SIGN(SHA_512)", "alg_id": 100663819, "bits": 2048, "client_id": 1, "duration_us": 300, "function": "psa_verify_hash", "function_id": 1795, "key_id": 2, "key_type": "RSA_PUBLIC_KEY", "key_type_id": 16385, "kind": "call", "seq_num": 5, "status": "PSA_SUCCESS", "status_code": 0, "time": 1796240943.359754, "volatile_keys": 0}
{"bits": 2048, "client_id": 1, "duration_us": 1132, "function": "psa_destroy_key", "function_id": 516, "key_id": 2, "key_type": "RSA_PUBLIC_KEY", "key_type_id": 16385, "kind": "call", "seq_num": 6, "status": "PSA_SUCCESS", "status_code": 0, "time": 1796240943.379353, "volatile_keys": 0}
"""  # noqa: E501
#: The same run, test_a_corrupted_certificate_is_refused: the signature does not verify.
RECORDED_REFUSAL = r"""
{"alg": "RSA_PKCS1V15_SIGN(SHA_256)", "alg_id": 100663817, "bits": 2048, "client_id": 1, "duration_us": 2779, "function": "psa_import_key", "function_id": 515, "key_id": 5, "key_type": "RSA_PUBLIC_KEY", "key_type_id": 16385, "kind": "call", "lifetime": "persistent", "seq_num": 13, "status": "PSA_SUCCESS", "status_code": 0, "time": 1796240956.946676, "volatile_keys": 0}
{"alg": "RSA_PKCS1V15_SIGN(SHA_256)", "alg_id": 100663817, "bits": 2048, "client_id": 1, "detail": "signature does not verify", "duration_us": 341, "function": "psa_verify_hash", "function_id": 1795, "key_id": 5, "key_type": "RSA_PUBLIC_KEY", "key_type_id": 16385, "kind": "call", "seq_num": 14, "status": "PSA_ERROR_INVALID_SIGNATURE", "status_code": -149, "time": 1796240956.96277}
{"bits": 2048, "client_id": 1, "duration_us": 1045, "function": "psa_destroy_key", "function_id": 516, "key_id": 5, "key_type": "RSA_PUBLIC_KEY", "key_type_id": 16385, "kind": "call", "seq_num": 15, "status": "PSA_SUCCESS", "status_code": 0, "time": 1796240956.980632, "volatile_keys": 0}
"""  # noqa: E501
#: The RSE's calls of a mutual-TLS run (host mode): provisioning, one handshake, destruction.
RECORDED_MUTUAL_TLS = r"""
{"function": "psa_generate_key", "key_id": 1, "key_type": "ECC_KEY_PAIR(SECP_R1)", "bits": 256, "lifetime": "persistent", "alg": "ECDSA(ANY_HASH)", "status": "PSA_SUCCESS"}
{"function": "psa_export_public_key", "key_id": 1, "key_type": "ECC_KEY_PAIR(SECP_R1)", "bits": 256, "status": "PSA_SUCCESS"}
{"function": "psa_sign_hash", "key_id": 1, "key_type": "ECC_KEY_PAIR(SECP_R1)", "bits": 256, "alg": "ECDSA(SHA_256)", "status": "PSA_SUCCESS"}
{"function": "psa_import_key", "key_id": 2, "key_type": "RSA_PUBLIC_KEY", "bits": 2048, "lifetime": "persistent", "alg": "RSA_PKCS1V15_SIGN(SHA_256)", "status": "PSA_SUCCESS"}
{"function": "psa_verify_hash", "key_id": 2, "key_type": "RSA_PUBLIC_KEY", "bits": 2048, "alg": "RSA_PKCS1V15_SIGN(SHA_256)", "status": "PSA_SUCCESS"}
{"function": "psa_destroy_key", "key_id": 2, "key_type": "RSA_PUBLIC_KEY", "bits": 2048, "status": "PSA_SUCCESS"}
{"function": "psa_import_key", "key_id": 3, "key_type": "RSA_PUBLIC_KEY", "bits": 2048, "lifetime": "persistent", "alg": "RSA_PKCS1V15_SIGN(SHA_512)", "status": "PSA_SUCCESS"}
{"function": "psa_verify_hash", "key_id": 3, "key_type": "RSA_PUBLIC_KEY", "bits": 2048, "alg": "RSA_PKCS1V15_SIGN(SHA_512)", "status": "PSA_SUCCESS"}
{"function": "psa_destroy_key", "key_id": 3, "key_type": "RSA_PUBLIC_KEY", "bits": 2048, "status": "PSA_SUCCESS"}
{"function": "psa_sign_hash", "key_id": 1, "key_type": "ECC_KEY_PAIR(SECP_R1)", "bits": 256, "alg": "ECDSA(SHA_256)", "status": "PSA_SUCCESS"}
{"function": "psa_destroy_key", "key_id": 1, "key_type": "ECC_KEY_PAIR(SECP_R1)", "bits": 256, "status": "PSA_SUCCESS"}
"""  # noqa: E501

LANES = ["ssl_client1", "ssl_server", "Parsec service", "RSE"]
#: Upstream Parsec's names of the operations the driver sends for each PSA call.
PARSEC_OPERATIONS = {
    "psa_import_key": "PsaImportKey",
    "psa_verify_hash": "PsaVerifyHash",
    "psa_destroy_key": "PsaDestroyKey",
}


# --- reading the page --------------------------------------------------------------------------


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element] = field(default_factory=list)
    text: str = ""

    def find_all(self, tag: str, **attrs: str) -> list[Element]:
        found = []
        for child in self.children:
            if child.tag == tag and all(child.attrs.get(k) == v for k, v in attrs.items()):
                found.append(child)
            found += child.find_all(tag, **attrs)
        return found

    def find(self, tag: str, **attrs: str) -> Element:
        [element] = self.find_all(tag, **attrs)
        return element


#: HTML elements that have no end tag.
VOID_ELEMENTS = frozenset({"meta", "link", "br", "hr", "img", "input"})


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in VOID_ELEMENTS:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        for element in self.stack:
            element.text += data


def parse(page: str) -> Element:
    builder = _TreeBuilder()
    builder.feed(page)
    builder.close()
    return builder.root


@dataclass
class Arrow:
    kind: str  # tls, parsec, psa, status
    source: str  # lane names
    target: str
    y: float
    label: str


def lanes(document: Element, diagram: int = 0) -> dict[str, float]:
    svg = document.find_all("svg")[diagram]
    names = svg.find_all("text", **{"class": "lane"})
    return {element.text.strip(): float(element.attrs["x"]) for element in names}


def arrows(document: Element, diagram: int = 0) -> list[Arrow]:
    """The arrows of the page's ``diagram``-th diagram top to bottom, each with the label
    drawn above it."""
    svg = document.find_all("svg")[diagram]
    lane_of = {x: name for name, x in lanes(document, diagram).items()}
    found: list[Arrow] = []
    children = svg.children
    for index, child in enumerate(children):
        kind = child.attrs.get("class", "").split()
        if child.tag != "line" or kind[:1] != ["step"]:
            continue
        label = children[index + 1]
        assert label.tag == "text", "each arrow has its label next to it"
        assert child.attrs.get("marker-end") == "url(#arrow)", "an arrow, not a plain line"
        found.append(
            Arrow(
                kind[1],
                lane_of[float(child.attrs["x1"])],
                lane_of[float(child.attrs["x2"])],
                float(child.attrs["y1"]),
                label.text.strip(),
            )
        )
        assert child.attrs["y1"] == child.attrs["y2"], "arrows are horizontal"
    return found


@dataclass
class Row:
    name: str
    status: str
    duration: str
    details: str
    css_class: str
    attached: list[str]


def results_table(document: Element) -> list[Row]:
    table = document.find("table", id="results")
    rows = table.find_all("tr")
    assert [h.text for h in rows[0].find_all("th")] == ["test", "status", "duration", "details"]
    found = []
    for row in rows[1:]:
        cells = row.find_all("td")
        assert len(cells) == 4, row
        found.append(
            Row(
                cells[0].text,
                cells[1].text,
                cells[2].text,
                cells[3].text,
                row.attrs.get("class", ""),
                [s.text for s in cells[3].find_all("summary")],
            )
        )
    return found


# --- what the page must say ---------------------------------------------------------------------


def check_diagram(page: str, calls: Sequence[tuple[str, int | None, str]]) -> None:
    """The four lanes in order, the TLS exchange between client and server around the calls, and
    for each PSA call ``(function, key id or None for any, status)``: the client's request to
    Parsec, the call from Parsec to the RSE and its status back (one pair), Parsec's reply."""
    document = parse(page)
    positions = lanes(document)
    assert list(positions) == LANES
    assert sorted(positions.values()) == list(positions.values()), "lanes left to right"
    found = arrows(document)
    assert [a.y for a in found] == sorted(set(a.y for a in found)), "one arrow per row, in order"
    tls = [a for a in found if a.kind == "tls"]
    assert {(a.source, a.target) for a in tls} == {
        ("ssl_client1", "ssl_server"),
        ("ssl_server", "ssl_client1"),
    }
    assert found[:2] == tls[:2] and found[-2:] == tls[-2:], "the handshake opens and closes"
    middle = found[2:-2]
    assert len(middle) == 4 * len(calls), [a.label for a in middle]
    assert len([a for a in found if a.kind == "psa"]) == len(calls)
    for n, (function, key_id, status) in enumerate(calls):
        request, call, answer, reply = middle[4 * n : 4 * n + 4]
        assert (request.kind, request.source, request.target) == (
            "parsec", "ssl_client1", "Parsec service",
        )  # fmt: skip
        assert request.label.split()[0] == PARSEC_OPERATIONS[function]
        assert (call.kind, call.source, call.target) == ("psa", "Parsec service", "RSE")
        key = r"0x[0-9a-f]{8}" if key_id is None else f"0x{key_id:08x}"
        assert re.fullmatch(rf"{function} key {key}", call.label), call.label
        assert (answer.kind, answer.source, answer.target, answer.label) == (
            "status", "RSE", "Parsec service", status,
        )  # fmt: skip
        assert (reply.kind, reply.source, reply.target) == (
            "parsec", "Parsec service", "ssl_client1",
        )  # fmt: skip
        assert (reply.label == "Success") == (status == "PSA_SUCCESS"), reply.label


def check_results_table(page: str, results: Sequence[tuple[str, str]]) -> list[Row]:
    """One row per case, in the run's order, with its status (word and colour class)."""
    rows = results_table(parse(page))
    assert [(r.name, r.status) for r in rows] == list(results)
    for row in rows:
        assert row.css_class == row.status.lower()
        assert re.fullmatch(r"\d+\.\d s", row.duration), row.duration
    return rows


def recorded_results() -> tuple[list[CaseResult], dict[str, str]]:
    """The recorded testresults.json as the runner's results, and its configuration."""
    [(result_id, entry)] = json.loads(RECORDED_RESULTS).items()
    assert result_id.startswith("runtime_parsec-demo-dev-image_")
    results = [
        CaseResult(name, r["status"], r.get("duration", 0.0), r.get("log", ""))
        for name, r in entry["result"].items()
    ]
    return results, entry["configuration"]


def events(text: str) -> list[RseCall]:
    return [RseCall.from_event(json.loads(line)) for line in text.strip().splitlines()]


def write_page(
    tmp_path: Path,
    results: Sequence[CaseResult],
    configuration: dict[str, str],
    handshake: Sequence[RseCall],
    logs: dict[str, str] | None = None,
    mutual_tls: Sequence[RseCall] = (),
) -> str:
    page = tmp_path / "report.html"
    reports.write_html(page, results, configuration, handshake, logs or {}, mutual_tls)
    return page.read_text()


# --- the tests ---------------------------------------------------------------------------------


def test_the_diagram_of_a_recorded_handshake(tmp_path: Path) -> None:
    results, configuration = recorded_results()
    page = write_page(tmp_path, results, configuration, events(RECORDED_HANDSHAKE))
    check_diagram(
        page,
        [
            ("psa_import_key", 1, "PSA_SUCCESS"),
            ("psa_verify_hash", 1, "PSA_SUCCESS"),
            ("psa_destroy_key", 1, "PSA_SUCCESS"),
            ("psa_import_key", 2, "PSA_SUCCESS"),
            ("psa_verify_hash", 2, "PSA_SUCCESS"),
            ("psa_destroy_key", 2, "PSA_SUCCESS"),
        ],
    )
    labels = [a.label for a in arrows(parse(page)) if a.kind == "parsec"]
    assert "PsaImportKey RSA_PUBLIC_KEY" in labels
    assert "PsaVerifyHash RSA_PKCS1V15_SIGN(SHA_512)" in labels


def test_a_refused_signature_shows_its_status_and_an_error_reply(tmp_path: Path) -> None:
    results, configuration = recorded_results()
    page = write_page(tmp_path, results, configuration, events(RECORDED_REFUSAL))
    check_diagram(
        page,
        [
            ("psa_import_key", 5, "PSA_SUCCESS"),
            ("psa_verify_hash", 5, "PSA_ERROR_INVALID_SIGNATURE"),
            ("psa_destroy_key", 5, "PSA_SUCCESS"),
        ],
    )


def test_the_table_lists_each_recorded_case_with_its_status(tmp_path: Path) -> None:
    results, configuration = recorded_results()
    page = write_page(tmp_path, results, configuration, events(RECORDED_HANDSHAKE))
    rows = check_results_table(page, [(r.name, r.status) for r in results])
    assert len(rows) == 7 and all(row.status == "PASSED" for row in rows)
    assert [row.duration for row in rows] == [f"{r.duration:.1f} s" for r in results]
    document = parse(page)
    assert document.find("p", id="summary").text.startswith("7 passed, 0 skipped, 0 failed ")
    assert document.find_all("ul", id="skipped") == [], "no skipped list without skips"
    settings = {
        row.find("th").text: row.find("td").text
        for row in document.find("table", id="configuration").find_all("tr")
    }
    assert settings == {k: str(v) for k, v in configuration.items()}


def test_failures_carry_their_log_and_the_machine_logs_skips_their_reason(tmp_path: Path) -> None:
    results, configuration = recorded_results()
    failed = CaseResult(results[3].name, "FAILED", 12.5, "Traceback ...\nAssertionError: 1 != 0")
    skipped = CaseResult(results[4].name, "SKIPPED", 0.0, "dependency x did not pass")
    changed = [*results[:3], failed, skipped, *results[5:]]
    logs = {"RSE console (host)": "[RSE-COMMS] <received>", "machine console": "login:"}
    page = write_page(tmp_path, changed, configuration, events(RECORDED_HANDSHAKE), logs)
    rows = check_results_table(page, [(r.name, r.status) for r in changed])
    assert "AssertionError: 1 != 0" in rows[3].details
    assert rows[3].attached == list(logs), "the logs are attached to the failure"
    assert "[RSE-COMMS] <received>" in rows[3].details, "escaped, shown as text"
    assert rows[4].details == "dependency x did not pass" and rows[4].attached == []
    assert all(row.attached == [] for row in rows if row.status == "PASSED")
    summary = parse(page).find("p", id="summary").text
    assert summary.startswith("5 passed, 1 skipped, 1 failed ")
    skipped = parse(page).find("ul", id="skipped").find_all("li")
    assert [li.text for li in skipped] == [f"{results[4].name}: dependency x did not pass"]


def test_without_rse_events_the_page_says_so_and_draws_nothing(tmp_path: Path) -> None:
    results, configuration = recorded_results()
    document = parse(write_page(tmp_path, results, configuration, []))
    assert document.find_all("svg") == []
    assert any("No RSE events were recorded" in p.text for p in document.find_all("p"))


def test_the_mutual_tls_diagram_shows_the_client_signature_going_to_the_rse(
    tmp_path: Path,
) -> None:
    results, configuration = recorded_results()
    page = write_page(
        tmp_path, results, configuration, events(RECORDED_HANDSHAKE), None,
        events(RECORDED_MUTUAL_TLS),
    )  # fmt: skip
    document = parse(page)
    assert len(document.find_all("svg")) == 2
    found = arrows(document, diagram=1)
    notes = [
        n.text.strip() for n in document.find_all("svg")[1].find_all("text", **{"class": "note"})
    ]
    assert notes[0].startswith("parsec_client_key generate") and notes[1].startswith("cert_write")
    calls = [a.label for a in found if a.kind == "psa"]
    # Provisioning, then the first handshake; the key's destruction after it is not drawn.
    assert [c.split()[0] for c in calls] == [
        "psa_generate_key", "psa_export_public_key", "psa_sign_hash",
        "psa_import_key", "psa_verify_hash", "psa_destroy_key",
        "psa_import_key", "psa_verify_hash", "psa_destroy_key",
        "psa_sign_hash",
    ]  # fmt: skip
    assert (
        calls[0]
        == calls[2].replace("psa_sign_hash", "psa_generate_key")
        == ("psa_generate_key key 0x00000001")
    )
    assert calls[-1] == "psa_sign_hash key 0x00000001", "the provisioned key signs"
    requests = [a for a in found if a.kind == "parsec" and a.source == "ssl_client1"]
    assert requests[2].label == "CSR: PsaSignHash ECDSA(SHA_256)"
    signature = requests[-1]
    assert signature.label == "CertificateVerify: PsaSignHash ECDSA(SHA_256)"
    assert signature.target == "Parsec service"
    tls = [a for a in found if a.kind == "tls"]
    assert [a.label for a in tls] == [
        "ClientHello",
        "ServerHello, Certificate, ServerKeyExchange, CertificateRequest",
        "Certificate, ClientKeyExchange, CertificateVerify, Finished",
        "Finished; GET / -> page",
    ]
    # The client's CertificateVerify goes out after the RSE signed it, the server's signatures
    # are checked after its messages came in.
    assert tls[1].y < requests[3].y and signature.y < tls[2].y
    assert [a.label for a in found if a.kind == "status"][-1] == "PSA_SUCCESS"

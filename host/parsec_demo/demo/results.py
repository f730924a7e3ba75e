"""A client program's run, what the RSE served for it, and how the demo reports both."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from parsec_demo_evidence import SUCCESS, RseCall, calls_of


@dataclass
class ClientRun:
    """One run of a client-side program: its command, output, status and duration, and the
    RSE calls made while it ran."""

    command: list[str]
    output: str
    returncode: int
    seconds: float
    calls: list[RseCall] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def served(self, function: str, status: str | None = None) -> list[RseCall]:
        """The calls of ``function`` (with ``status``, if given) the RSE served for this run."""
        return calls_of(self.calls, function, status)


def verdict(ok: bool, what: str, calls: Sequence[RseCall], run_dir: Path) -> str:
    """The demo's last line: whether ``what`` (``the TLS 1.2 handshake``, say) passed, and
    what the RSE did for it; or where to look."""
    if not ok:
        return f"FAILED: {what} did not complete; the output is above, the logs in {run_dir}"

    def succeeded(function: str) -> int:
        return len(calls_of(calls, function, SUCCESS))

    def count(number: int, noun: str) -> str:
        return f"{number} {noun}{'' if number == 1 else 's'}"

    generated, signed = succeeded("psa_generate_key"), succeeded("psa_sign_hash")
    done = [f"verified {count(succeeded('psa_verify_hash'), 'signature')}"]
    if generated:
        done.append(f"generated {count(generated, 'key pair')}")
    if signed:
        done.append(f"made {count(signed, 'signature')}")
    left = succeeded("psa_import_key") + generated - succeeded("psa_destroy_key")
    kept = "kept no key" if left == 0 else f"kept {count(left, 'key')}"
    return f"PASSED: {what}; the RSE {', '.join(done)} and {kept}"


def summary(calls: Sequence[RseCall]) -> str:
    """``RSE served: psa_import_key x2, psa_verify_hash x2 (PSA_SUCCESS), ...`` and details."""
    statuses: dict[str, Counter[str]] = {}
    for call in calls:
        statuses.setdefault(call.function, Counter())[call.status] += 1
    parts = []
    for name, counts in statuses.items():
        text = f"{name} x{sum(counts.values())}"
        if name == "psa_verify_hash" or set(counts) != {SUCCESS}:
            each = [f"{n} {s}" if len(counts) > 1 else s for s, n in counts.items()]
            text += f" ({', '.join(each)})"
        parts.append(text)
    lines = ["RSE served: " + (", ".join(parts) if parts else "nothing")]
    for call in calls:
        what: list[str] = []
        if call.function in ("psa_import_key", "psa_generate_key"):
            what = [call.key_type or "?", f"{call.bits if call.bits is not None else '?'} bits"]
        elif call.alg is not None:
            what = [call.alg]
        key = f"key 0x{call.key_id:08x}" if call.key_id is not None else ""
        lines.append(f"  {call.function:<16} {key:<15} {' '.join(what):<32} {call.status}")
    return "\n".join(lines)

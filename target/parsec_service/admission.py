"""Admission: whether an application may have another key, so that no application, and no
group of them, can take the RSE from the rest.

Every key an application holds counts (pending ones too), and so do the bytes of its names and
attributes in the key info manager. See ``Admission`` for the rules.
"""

from __future__ import annotations

from dataclasses import dataclass


class QuotaExceeded(Exception):
    """A creation the admission rules refuse; ``setting`` is the configuration key behind it."""

    def __init__(self, detail: str, setting: str) -> None:
        super().__init__(detail)
        self.setting = setting


@dataclass(frozen=True)
class Admission:
    """How many keys and bytes of key information an application may hold, and how the RSE's
    capacity is shared (``[core_settings]`` settings of the same names).

    An application may hold up to ``max_keys_per_application`` keys and
    ``max_key_info_bytes_per_application`` bytes of names and attributes. All applications
    together hold at most ``rse_key_capacity`` keys, and the last ``key_reserve`` of them go
    only to applications holding fewer than ``keys_guaranteed_per_application``: however full
    the others make the RSE, at least ``key_reserve // keys_guaranteed_per_application``
    more applications can still make their first keys (a handshake needs one at a time).
    """

    max_keys_per_application: int = 64
    max_key_info_bytes_per_application: int = 65536
    rse_key_capacity: int = 256
    key_reserve: int = 32
    keys_guaranteed_per_application: int = 4

    def refusal(
        self, app: str, keys: int, info_bytes: int, new_bytes: int, total: int
    ) -> QuotaExceeded | None:
        """Why an application holding ``keys`` keys and ``info_bytes`` bytes may not add a key
        of ``new_bytes`` while all hold ``total`` keys; None if it may."""
        if keys >= self.max_keys_per_application:
            return QuotaExceeded(
                f"application {app!r} has its quota of {self.max_keys_per_application} keys",
                "max_keys_per_application",
            )
        if info_bytes + new_bytes > self.max_key_info_bytes_per_application:
            return QuotaExceeded(
                f"application {app!r} would hold more than "
                f"{self.max_key_info_bytes_per_application} bytes of key names and attributes",
                "max_key_info_bytes_per_application",
            )
        if total >= self.rse_key_capacity:
            return QuotaExceeded(
                f"the RSE's {self.rse_key_capacity} keys are all in use", "rse_key_capacity"
            )
        if keys >= self.keys_guaranteed_per_application and (
            total >= self.rse_key_capacity - self.key_reserve
        ):
            return QuotaExceeded(
                f"application {app!r} holds {keys} keys and the last {self.key_reserve} of "
                f"the RSE's {self.rse_key_capacity} are kept for applications holding fewer "
                f"than {self.keys_guaranteed_per_application}",
                "key_reserve",
            )
        return None


def info_size(name: str, attributes: bytes) -> int:
    """What a key costs its application's storage allowance: its name and attributes."""
    return len(name.encode()) + len(attributes)

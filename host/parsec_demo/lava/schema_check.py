"""Check LAVA job definitions and test definitions with LAVA's own schema (``lava_common``).

Run by Debian's ``python3``, which has Debian's ``lava-common`` (it is not on PyPI), not by
the toolkit's interpreter: ``python3 schema_check.py job|testdef FILE...``. One line per file,
``FILE: valid`` or ``FILE: invalid: <LAVA's message>``; exit status 1 if any is invalid, 2 if
LAVA's schema is not installed. Standalone on purpose: it imports nothing of the toolkit.
"""

import sys
from collections.abc import Callable
from typing import Any

try:
    import yaml
    from lava_common.schemas import validate as validate_job  # type: ignore[import-not-found]
    from lava_common.schemas.test.testdef import (  # type: ignore[import-not-found]
        validate as validate_testdef,
    )
    from voluptuous import Invalid  # type: ignore[import-not-found]
except ImportError as exc:
    print(f"LAVA's schema is not installed ({exc}): install Debian's lava-common")
    sys.exit(2)

CHECKS: dict[str, Callable[[Any], None]] = {
    "job": lambda data: validate_job(data, strict=True),
    "testdef": validate_testdef,
}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in CHECKS:
        print("usage: schema_check.py job|testdef FILE...")
        return 2
    check = CHECKS[argv[0]]
    failed = 0
    for name in argv[1:]:
        try:
            with open(name) as stream:
                check(yaml.safe_load(stream))
        except (OSError, yaml.YAMLError) as exc:
            print(f"{name}: unreadable: {exc}")
            failed += 1
        except Invalid as exc:
            print(f"{name}: invalid: {exc}")
            failed += 1
        else:
            print(f"{name}: valid")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Check LAVA job definitions and test definitions with LAVA's own schema (``lava_common``).

Run by Debian's ``python3``, which has Debian's ``lava-common`` (it is not on PyPI), not by
the toolkit's interpreter:

  python3 schema_check.py job|testdef FILE...
  python3 schema_check.py device TEMPLATES FILE...   device dictionaries, rendered first
  python3 schema_check.py render TEMPLATES FILE [CONTEXT.json]
                                  the device configuration for a job of that context, on stdout

One line per file, ``FILE: valid`` or ``FILE: invalid: <LAVA's message>``; exit status 1 if any
is invalid, 2 if LAVA's schema is not installed. A device dictionary is rendered as lava-server
renders it: Jinja2's sandbox, ``trim_blocks``, no escaping, the dictionary's directory and
lava-server's ``device-types`` (TEMPLATES) on the search path. Standalone on purpose: it
imports nothing of the toolkit.
"""

import json
import sys
from collections.abc import Callable
from typing import Any

try:
    import yaml
    from jinja2 import FileSystemLoader, TemplateError  # type: ignore[import-not-found]
    from jinja2.sandbox import SandboxedEnvironment  # type: ignore[import-not-found]
    from lava_common.schemas import validate as validate_job  # type: ignore[import-not-found]
    from lava_common.schemas.device import (  # type: ignore[import-not-found]
        validate as validate_device,
    )
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


def render(templates: str, name: str, context: dict[str, Any] | None = None) -> str:
    directory, _, base = name.rpartition("/")
    environment = SandboxedEnvironment(
        loader=FileSystemLoader([directory or ".", templates]),
        autoescape=False,
        trim_blocks=True,
    )
    text: str = environment.get_template(base).render(**(context or {}))
    return text


def main(argv: list[str]) -> int:
    usage = "usage: schema_check.py job|testdef FILE... | device|render TEMPLATES FILE..."
    kind = argv[0] if argv else ""
    templates = argv[1] if kind in ("device", "render") and len(argv) > 1 else ""
    files = argv[2:] if templates else argv[1:]
    if kind not in (*CHECKS, "device", "render") or not files:
        print(usage)
        return 2
    if kind == "render":
        context = {}
        if len(files) > 1:
            with open(files[1]) as stream:
                context = json.load(stream)
        print(render(templates, files[0], context), end="")
        return 0
    failed = 0
    for name in files:
        try:
            if kind == "device":
                validate_device(yaml.safe_load(render(templates, name)))
            else:
                with open(name) as stream:
                    CHECKS[kind](yaml.safe_load(stream))
        except (OSError, yaml.YAMLError, TemplateError) as exc:
            print(f"{name}: unreadable: {' '.join(str(exc).split())}")
            failed += 1
        except Invalid as exc:
            print(f"{name}: invalid: {exc}")
            failed += 1
        else:
            print(f"{name}: valid")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Where the project keeps what it makes, and where its repository is.

The toolkit runs from a checkout (``./tools/*``, an editable install) or installed on its own
(``pip install``). Jobs that read the repository (the Yocto layer, the contracts, the C
sources: the native build, the dev image, the validation cases) look for a checkout in this
order: ``PARSEC_DEMO_ROOT``, the current directory or one of its parents, the checkout this
code is installed from (an editable install). Without one they stop with one line that says
so; everything else, ``--help`` included, works anywhere.

Run directories go under ``PARSEC_DEMO_RUNS``, else the checkout's ``runs/``, else ``./runs``,
so that a user finds the logs of every run without asking where they went.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from types import ModuleType

from .errors import UserError

#: A directory is a checkout of this project when it holds these.
CHECKOUT_MARKERS = ("meta-parsec-demo/conf/layer.conf", "contracts/parsec")


class NoCheckoutError(UserError):
    pass


def is_checkout(path: Path) -> bool:
    return all((path / marker).exists() for marker in CHECKOUT_MARKERS)


def find_checkout() -> Path | None:
    """The project's repository, or None when there is none to be found."""
    override = os.environ.get("PARSEC_DEMO_ROOT")
    if override:
        root = Path(override).resolve()
        if not is_checkout(root):
            raise NoCheckoutError(
                f"PARSEC_DEMO_ROOT={override} is not a parsec-demo checkout "
                f"(it has no {CHECKOUT_MARKERS[0]})"
            )
        return root
    cwd = Path.cwd()
    for candidate in (cwd, *cwd.parents, Path(__file__).resolve().parents[2]):
        if is_checkout(candidate):
            return candidate
    return None


def project_root() -> Path:
    """The project's repository; NoCheckoutError, in one line, when there is none."""
    root = find_checkout()
    if root is None:
        raise NoCheckoutError(
            "this needs a parsec-demo checkout (its layer and sources): run it from inside "
            "one, or set PARSEC_DEMO_ROOT"
        )
    return root


def __getattr__(name: str) -> Path:
    # ``PROJECT_ROOT`` is looked up when used, not when this module is imported, so that
    # importing the toolkit never needs a checkout.
    if name == "PROJECT_ROOT":
        return project_root()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def layer_dir() -> Path:
    """The checkout's Yocto layer, meta-parsec-demo."""
    return project_root() / "meta-parsec-demo"


def layer_lib() -> Path:
    """The layer's Python (its oeqa cases and controllers, the modules the toolkit shares), as
    ``addpylib`` puts it on BitBake's path."""
    return layer_dir() / "lib"


def demo_pki_dir() -> Path:
    """The layer's test PKI: the server's certificate and key and the CA that issued them, and
    the client CA with its (public, test-only) key."""
    return layer_lib() / "oeqa/runtime/files/parsec_tls_demo"


def layer_module(name: str) -> ModuleType:
    """A standard-library module of the layer's ``lib/`` (what BitBake imports with
    ``addpylib``), loaded from the checkout so that the toolkit and the layer share one copy."""
    path = layer_lib() / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"parsec_demo_layer_{name}", path)
    if spec is None or spec.loader is None:
        raise NoCheckoutError(f"the layer has no module {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cache_root() -> Path:
    """What the toolkit builds and downloads for the next run, and for the next checkout of the
    same user: ``PARSEC_DEMO_CACHE``, else ``$XDG_CACHE_HOME/parsec-demo`` (by default
    ``~/.cache/parsec-demo``). Everything in it is named by a hash of its inputs or checked
    against a pin, so a checkout never uses what another one's sources would not have made;
    deleting it costs only the time to make it again."""
    override = os.environ.get("PARSEC_DEMO_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "parsec-demo"


def runs_root() -> Path:
    override = os.environ.get("PARSEC_DEMO_RUNS")
    if override:
        return Path(override)
    checkout = find_checkout()
    return (checkout if checkout is not None else Path.cwd()) / "runs"


def new_run_dir(kind: str) -> Path:
    """A fresh directory ``runs/<kind>-<UTC timestamp>[-n]`` for one run's logs and state."""
    root = runs_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the runs directory {root}: {exc.strerror}") from exc
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for n in range(1000):
        candidate = root / (f"{kind}-{stamp}" if n == 0 else f"{kind}-{stamp}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise UserError(f"cannot create a run directory in {root}: {exc.strerror}") from exc
        return candidate
    raise UserError(f"cannot create a run directory under {root}: 1000 of this second exist")

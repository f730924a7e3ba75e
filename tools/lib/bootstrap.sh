# shellcheck shell=bash
# Sourced by the tools/ entry points. Makes the project's Python environment exist,
# idempotently: .venv with the pinned Python dependencies listed in pyproject.toml and the
# project itself installed editable (redone only when pyproject.toml, the constraints file or
# this bootstrap change), and the contracts' Python modules. The Debian packages of each job
# are not named here: each command installs its own (parsec_demo/cli/debian.py); only Python
# itself, needed before any of that can run, is installed from here. Progress goes to stderr so
# that command output stays clean.

PROJECT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$PROJECT_ROOT/.venv"
# The toolkit works on this checkout, wherever it is run from.
PARSEC_DEMO_ROOT="$PROJECT_ROOT"
export PROJECT_ROOT VENV PARSEC_DEMO_ROOT

say() { printf '[parsec-demo] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

_apt_updated=""
# ensure_apt PKG...: install the Debian packages that are not installed yet (here: Python).
ensure_apt() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing Debian packages: ${missing[*]} (run as root, or install them)"
    say "installing Debian packages: ${missing[*]}"
    if [ -z "$_apt_updated" ]; then
        apt-get update -qq >&2 || die "apt-get update failed"
        _apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
}

_find_python() {
    local candidate
    for candidate in python3.11 python3 python3.12 python3.13; do
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11, 2))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# ensure_venv [dev]: .venv exists and holds the pinned dependencies of running the toolkit
# (pyproject's dependencies and its "tools" extra), and with "dev" the test suite's too (the
# "dev" extra: linters, pytest, profilers); a venv with the dev extra serves both. Nothing is deleted that
# this bootstrap did not make: a .venv it cannot use is remade only when it is the user's own
# and carries the bootstrap's stamp; any other (made by another user, or by hand) stops the
# command with one line saying what to do.
ensure_venv() {
    local stamp want owner extras="tools" have
    [ "${1:-}" = dev ] && extras="tools,dev"
    # What the venv is made from: the dependencies, their pins, and how this file installs them.
    want="$(cat "$PROJECT_ROOT/pyproject.toml" "$PROJECT_ROOT/tools/constraints.txt" \
        "$PROJECT_ROOT/tools/lib/bootstrap.sh" | sha256sum | cut -d' ' -f1)"
    stamp="$VENV/.parsec-demo-deps"
    have="$(cat "$stamp" 2>/dev/null || true)"
    if [ ! -e "$VENV" ] && [ ! -L "$VENV" ]; then
        _make_venv
    elif ! "$VENV/bin/python" -c '' 2>/dev/null; then
        owner="$(stat -c %U "$VENV" 2>/dev/null || echo "another user")"
        { [ -O "$VENV" ] && [ -e "$stamp" ]; } \
            || die "$VENV (made by $owner) has a Python you cannot run: run this as $owner, or move $VENV away and run it again"
        say "the Python of $VENV no longer runs: making it again"
        _make_venv --clear
    elif [ "$have" = "$want $extras" ] || [ "$have" = "$want tools,dev" ]; then
        _generate_contracts
        return 0
    elif ! { [ -w "$VENV" ] && [ -w "$VENV/bin" ]; }; then
        owner="$(stat -c %U "$VENV" 2>/dev/null || echo "another user")"
        die "$VENV (made by $owner) needs its Python dependencies updated and you cannot write to it: run this as $owner once"
    fi
    [ "$have" = "$want tools,dev" ] && extras="tools,dev"  # never less than it had
    "$VENV/bin/python" - "$PROJECT_ROOT/pyproject.toml" "$extras" > "$VENV/requirements.txt" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
wanted = list(project["dependencies"])
for extra in sys.argv[2].split(","):
    wanted += project["optional-dependencies"][extra]
print("\n".join(wanted))
PY
    say "installing pinned Python dependencies into $VENV ($(paste -sd' ' "$VENV/requirements.txt" | sed 's/[<>=][^ ]*//g'))"
    _install_dependencies
    _generate_contracts
    # The project itself, editable: its console scripts run this checkout's code.
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
        --no-build-isolation -e "$PROJECT_ROOT" >&2 || die "installing the project failed"
    rm -f "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/parsec_demo.pth"
    echo "$want $extras" > "$stamp"
}

# The pinned dependencies go in from a wheelhouse in the user's cache (wheels/ of
# parsec_demo.paths.cache_root), one for each set of requirements, constraints, Python and
# platform: the first checkout fills it from the package index, the next ones install from it
# alone, without reading the index again. The newest three are kept; the venv's
# .parsec-demo-wheels names its own (the test suite installs the project from it). Where the
# cache cannot be written, pip installs from the index as it would by itself.
_install_dependencies() {
    local pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
    local pinned=(-r "$VENV/requirements.txt" -c "$PROJECT_ROOT/tools/constraints.txt")
    local cache key wheels partial
    cache="$(PYTHONPATH="$PROJECT_ROOT/host" "$VENV/bin/python" -c \
        'from parsec_demo.paths import cache_root; print(cache_root() / "wheels")')" \
        && mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ] || cache=""
    rm -f "$VENV/.parsec-demo-wheels"
    # --no-compile: modules are byte-compiled when first imported, not all of them up front.
    if [ -z "$cache" ]; then
        "${pip[@]}" install --no-compile "${pinned[@]}" >&2 || die "pip install failed (see above)"
        return 0
    fi
    key="$({ cat "$VENV/requirements.txt" "$PROJECT_ROOT/tools/constraints.txt"
             "$VENV/bin/python" -c 'import sys, sysconfig
print(sys.implementation.cache_tag, sysconfig.get_platform())'; } | sha256sum | cut -c1-16)"
    wheels="$cache/$key"
    local from_wheels=(install --no-compile --no-index --find-links "$wheels" "${pinned[@]}")
    if ! { [ -d "$wheels" ] && "${pip[@]}" "${from_wheels[@]}" >&2 2>/dev/null; }; then
        if [ -d "$wheels" ]; then
            say "the wheelhouse $wheels lacks wheels: making it again"
            rm -rf "$wheels"
        fi
        say "downloading the wheels into $wheels (once for this set of dependencies)"
        partial="$(mktemp -d "$cache/.partial.XXXXXX")"
        "${pip[@]}" wheel -w "$partial" "${pinned[@]}" >&2 \
            || { rm -rf "$partial"; die "pip wheel failed (see above)"; }
        # Another checkout may have finished the same wheelhouse meanwhile: either one will do.
        mv -T "$partial" "$wheels" 2>/dev/null || rm -rf "$partial"
        find "$cache" -mindepth 1 -maxdepth 1 -name '.partial.*' -mmin +120 -exec rm -rf {} +
        "${pip[@]}" "${from_wheels[@]}" >&2 || die "pip install from $wheels failed (see above)"
    fi
    touch "$wheels"  # its last use: the three kept are the three used last
    find "$cache" -mindepth 1 -maxdepth 1 -name '[0-9a-f]*' -printf '%T@ %p\n' | sort -rn \
        | tail -n +4 | cut -d' ' -f2- | xargs -r rm -rf
    echo "$wheels" > "$VENV/.parsec-demo-wheels"
}

# _make_venv [--clear]: the venv, with the first suitable Python (installing Debian's if need be).
_make_venv() {
    local python
    python="$(_find_python)" || { ensure_apt python3 python3-venv; python="$(_find_python)"; } \
        || die "Python 3.11.2 or newer is required (Debian 12's python3 or newer)"
    say "creating $VENV with $python"
    "$python" -m venv "$@" "$VENV" 2>/dev/null && return 0
    ensure_apt python3-venv  # Debian's python3 without ensurepip: the venv is half made
    "$python" -m venv --clear "$VENV" || die "cannot create $VENV"
}

# The Python modules of the Parsec contracts, regenerated when a .proto changes.
_generate_contracts() {
    "$VENV/bin/python" "$PROJECT_ROOT/target/build_contracts.py" >/dev/null \
        || die "generating the contracts' Python modules failed"
}

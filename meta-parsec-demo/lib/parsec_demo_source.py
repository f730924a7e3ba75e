#
# SPDX-License-Identifier: MIT
#
"""Where the project's own source comes from: the git checkout this layer lives in.

The layer sits at the top of the project's repository, beside the sources its recipes build
(the target package, the Parsec contracts, the RSE model). So a build that adds the layer from
a clone needs no address: the recipes fetch that clone (``git://<checkout>;protocol=file``) at
its HEAD commit, and the project's web address is the clone's ``origin`` remote. A build may
still name another source (``PARSEC_DEMO_GIT_URI`` and ``PARSEC_DEMO_SRCREV``), and must when
the layer was copied out of its repository.

Standard library only, and BitBake's ``d`` only in the functions named ``bitbake_*``: BitBake
reads it through ``addpylib`` in ``conf/layer.conf``, and the host toolkit (the LAVA jobs'
test definition repository) loads the same file.
"""

import os
import re
import subprocess
import urllib.parse

#: Paths, relative to the checkout, that make a directory a checkout of the project.
CHECKOUT_MARKERS = ("meta-parsec-demo/conf/layer.conf", "contracts/parsec", "target")
#: The top-level domains reserved for examples, tests and invalid names (RFC 2606) and the
#: example domains: an address there is a placeholder, not a host anyone can reach.
RESERVED_SUFFIXES = (".example", ".invalid", ".test")
RESERVED_DOMAINS = ("example.com", "example.net", "example.org")


def _git(checkout, *args):
    """``git -C checkout ARGS``'s output, stripped, or "" when git fails or is missing."""
    try:
        result = subprocess.run(
            ["git", "-C", checkout, *args], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def checkout_of(layer_dir):
    """The project checkout that holds the layer directory ``layer_dir``, or "" when the layer
    is not at the top of a git work tree of the project (a copied layer, another repository)."""
    checkout = os.path.dirname(os.path.abspath(layer_dir))
    if not all(os.path.exists(os.path.join(checkout, m)) for m in CHECKOUT_MARKERS):
        return ""
    top = _git(checkout, "rev-parse", "--show-toplevel")
    if not top or os.path.realpath(top) != os.path.realpath(checkout):
        return ""
    return checkout


def head_commit(checkout):
    """The commit the checkout's HEAD names, or "" without one."""
    if not checkout:
        return ""
    commit = _git(checkout, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    return commit if re.fullmatch(r"[0-9a-f]{40,64}", commit) else ""


def remote_url(checkout, remote="origin"):
    """The URL the checkout's ``remote`` was cloned from, or "" when it has none."""
    return _git(checkout, "config", "--get", f"remote.{remote}.url") if checkout else ""


def split_remote(url):
    """(scheme, host, path) of a git remote URL, credentials and port dropped: the scp-like
    ``user@host:path`` form is ssh. A local path or a file: URL gives ("", "", "")."""
    if "://" not in url:
        found = re.fullmatch(r"(?:[^@/:]+@)?([^@/:]+):(?!/)(.+)", url)
        if not found or os.path.exists(url):
            return ("", "", "")
        return ("ssh", found.group(1).lower(), "/" + found.group(2).lstrip("/"))
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file" or not parts.hostname:
        return ("", "", "")
    return (parts.scheme, parts.hostname.lower(), parts.path)


def is_reserved_host(host):
    """Whether ``host`` is a name that can never be reached (an example or test domain)."""
    host = host.lower().rstrip(".")
    return host.endswith(RESERVED_SUFFIXES) or any(
        host == domain or host.endswith("." + domain) for domain in RESERVED_DOMAINS
    )


def clone_address(url):
    """``url`` as another machine can clone it: no password or token (a user name stays for
    ssh), or "" when it is local."""
    if not split_remote(url)[1]:
        return ""
    if "://" not in url:
        return url  # the scp-like ssh form: a user name at most
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return ""
    netloc = parts.hostname + ("" if port is None else f":{port}")
    if parts.scheme == "ssh" and parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def web_address(url):
    """The project's web page for the remote ``url`` (https, no ``.git``), or ""."""
    _, host, path = split_remote(url)
    if not host:
        return ""
    path = path.rstrip("/")
    if path.endswith(".git"):
        path = path[: -len(".git")]
    return f"https://{host}{path}"


def bitbake_git_uri(d):
    """PARSEC_DEMO_GIT_URI's default: the checkout (PARSEC_DEMO_CHECKOUT, found once when the
    layer's configuration was read), fetched with git from the file system."""
    checkout = d.getVar("PARSEC_DEMO_CHECKOUT")
    if not checkout:
        _fatal(d, "PARSEC_DEMO_GIT_URI")
    return f"git://{checkout};protocol=file;nobranch=1"


def bitbake_srcrev(d):
    """PARSEC_DEMO_SRCREV's default: the checkout's HEAD when the layer's configuration was
    read (PARSEC_DEMO_CHECKOUT_HEAD, assigned immediately so that a new commit changes the
    configuration and BitBake parses the recipes again)."""
    commit = d.getVar("PARSEC_DEMO_CHECKOUT_HEAD")
    if not commit:
        _fatal(d, "PARSEC_DEMO_SRCREV")
    return commit


def bitbake_homepage(d):
    """PARSEC_DEMO_HOMEPAGE's default: the web address of the checkout's origin remote."""
    return web_address(remote_url(d.getVar("PARSEC_DEMO_CHECKOUT") or ""))


def _fatal(d, variable):
    import bb

    bb.fatal(
        f"meta-parsec-demo: {variable} has no value: the layer "
        f"({d.getVar('PARSEC_DEMO_LAYERDIR')}) is not at the top of a git checkout of its "
        "project, so set PARSEC_DEMO_GIT_URI and PARSEC_DEMO_SRCREV to the project's "
        "repository and commit"
    )

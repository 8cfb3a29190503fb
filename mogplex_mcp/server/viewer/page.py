"""The viewer's HTML: the template, its style and script inlined, the pinned ext-apps library bundled in.

The document loads nothing from the network. Its own Content-Security-Policy allows exactly the inline
script and style it ships (by hash), no eval, no other source: a second wall behind the host's sandbox, and
the reason an event message that smuggles markup could not run even if it ever reached the DOM as markup.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from functools import cache
from importlib.resources import files
from typing import Any

_PACKAGE = files("mogplex_mcp.server.viewer")
_LIBRARY = "vendor/ext-apps-app-with-deps.js"
# The library is an ES module ending in one `export{local as Name,…};` — rebound here to an object.
_EXPORTS = re.compile(r"export\s*\{(?P<names>[^{}]*)\}\s*;?\s*$")


def _read(name: str) -> str:
    return (_PACKAGE / name).read_text(encoding="utf-8")


@cache
def library_module() -> str:
    """The vendored ext-apps build with its export list turned into `const ExtApps = {…}`."""
    source = _read(_LIBRARY)
    match = _EXPORTS.search(source)
    if match is None:
        raise RuntimeError(f"{_LIBRARY} does not end in an export list; was it replaced by another build?")
    pairs = []
    for spec in match.group("names").split(","):
        local, _, exported = (part.strip() for part in spec.partition(" as "))
        pairs.append(f"{exported or local}:{local}")
    return source[: match.start()] + "const ExtApps={" + ",".join(pairs) + "};\n"


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def content_security_policy(script: str, style: str) -> str:
    """Nothing but the shipped inline script and style; images only as data: URLs; no connections."""
    return (
        f"default-src 'none'; script-src {_sha256(script)}; style-src {_sha256(style)}; img-src data:; "
        "connect-src 'none'; frame-src 'none'; form-action 'none'; base-uri 'none'"
    )


def render(*, can_cancel: bool, wait_seconds: float, version: str) -> str:
    """The whole document, for one server configuration (Cancel only when the server can cancel)."""
    script = library_module() + "\n" + _read("static/viewer.js")
    style = _read("static/viewer.css")
    config: dict[str, Any] = {"canCancel": can_cancel, "waitSeconds": wait_seconds, "version": version}
    blob = json.dumps(config).replace("<", "\\u003c")
    html = _read("static/viewer.html")
    for marker, value in (
        ("__CSP__", content_security_policy(script, style)),
        ("__CONFIG__", blob),
        ("__STYLE__", style),
        ("__SCRIPT__", script),
    ):
        head, found, tail = html.partition(marker)
        if not found:
            raise RuntimeError(f"viewer.html lacks {marker}")
        html = head + value + tail  # not str.replace: the script may contain any marker-like text
    return html

"""The vendored ext-apps build is the pinned npm package's file, byte for byte, with its licence.

tests/viewer/package-lock.json pins the package (`.ci/install-viewer` installs it); a vendored file that
drifted from it, or a pin bumped without re-vendoring, fails here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.provision import missing
from tests.viewer.support import INSTALL, NODE_MODULES, ensure_npm_packages

VENDOR = Path(__file__).parents[2] / "mogplex_mcp" / "server" / "viewer" / "vendor"
PINNED = json.loads((VENDOR / "PINNED.json").read_text())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_vendored_build_matches_its_recorded_hash() -> None:
    assert _sha256(VENDOR / PINNED["vendoredAs"]) == PINNED["sha256"]
    assert (VENDOR / PINNED["licence"]).read_text().strip()


def test_the_vendored_build_and_licence_are_the_pinned_npm_package_s() -> None:
    ensure_npm_packages()
    package = NODE_MODULES / PINNED["package"]
    if not package.is_dir():
        missing(f"the npm package {PINNED['package']} (tests/viewer/node_modules)", INSTALL)
    manifest = json.loads((package / "package.json").read_text())
    assert manifest["version"] == PINNED["version"]
    lock = json.loads((Path(__file__).parent / "package-lock.json").read_text())
    assert lock["packages"][f"node_modules/{PINNED['package']}"]["version"] == PINNED["version"]
    assert _sha256(package / PINNED["file"]) == PINNED["sha256"]
    assert (package / "LICENSE").read_bytes() == (VENDOR / PINNED["licence"]).read_bytes()

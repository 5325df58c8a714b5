"""Verbatim exchange recordings for the conformance tests: where they may be, and their checksums.

The recorded bodies come from public repositories' test fixtures and are not committed here (only
their SOURCES.md, with repository, path, commit and SHA-256). A machine has them either beside this
module (`recordings/`, git-ignored) or in `shared/recordings/market/` beside the checkout."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

RECORDINGS = Path(__file__).parent / "recordings"


def recorded_body(name: str, manifest: dict[str, str], folder: str = "") -> bytes:
    """The recorded body of `folder/name`, byte for byte, checked against `manifest`'s SHA-256; the
    test skips, naming the file, when this machine has no copy."""
    local = RECORDINGS / folder
    shared = (parent / "shared" / "recordings" / "market" / folder for parent in Path(__file__).resolve().parents)
    for root in (local, *shared):
        path = root / name
        if path.is_file():
            body = path.read_bytes()
            digest = hashlib.sha256(body).hexdigest()
            assert digest == manifest[name], f"{path} is not the recording listed in SOURCES.md (sha256 {digest})"
            return body
    where = local.relative_to(Path(__file__).parents[2])
    pytest.skip(f"recording {name} is not on this machine (see {where}/SOURCES.md)")

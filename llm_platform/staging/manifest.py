"""Digests and the SHA256SUMS manifest, in the format the boot script checks with `sha256sum --check --strict`:
one `<sha256>  <path>` line per file, paths relative to the model directory, sorted, no entry for the
manifest itself."""
from __future__ import annotations

import hashlib
from pathlib import Path

MANIFEST = "SHA256SUMS"
CHUNK = 8 * 2 ** 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def git_blob_sha1(path: Path) -> str:
    """Git's object id of a file (what the Hub lists as blobId for files not stored in LFS)."""
    h = hashlib.sha1(usedforsecurity=False)
    h.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def render(digests: dict[str, str]) -> str:
    bad = [p for p in digests if any(c.isspace() for c in p) or p.startswith("/") or ".." in p.split("/")]
    if bad:
        raise ValueError(f"file names the boot check cannot list safely: {bad}")
    return "".join(f"{digests[p]}  {p}\n" for p in sorted(digests))


def parse(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        digest, _, path = line.partition("  ")
        out[path.removeprefix("*")] = digest
    return out


def files_under(root: Path) -> list[str]:
    """Files of a staged model directory, relative, sorted; the download tool's own cache is not the model."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and ".cache" not in p.relative_to(root).parts and p.name != MANIFEST)

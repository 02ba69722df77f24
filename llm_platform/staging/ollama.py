"""Pull one Ollama model by manifest digest, as `ollama pull` lays it out, and verify every blob.

The Ollama registry speaks the OCI distribution API: GET /v2/<namespace>/<model>/manifests/<tag>
returns the manifest (its sha256 is the revision we pin), whose config and layers are blobs fetched from
/v2/<namespace>/<model>/blobs/sha256:<hex>, each content-addressed. The store then holds Ollama's own
models directory (OLLAMA_MODELS): manifests/registry.ollama.ai/library/<deployment name>/latest and
blobs/sha256-<hex>, so the runtime serves it under the deployment's name, offline.
OLLAMA_REGISTRY (default https://registry.ollama.ai) points elsewhere (a mirror; the tests' fake).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from . import manifest
from .errors import StageError
from .hub import Staged

MEDIA_TYPES = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def _registry() -> str:
    return os.environ.get("OLLAMA_REGISTRY", "https://registry.ollama.ai").rstrip("/")


def _get(url: str, accept: str = "*/*") -> bytes:
    req = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "llm-platform-stage"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:      # noqa: S310 (https registry or loopback)
            return resp.read()
    except urllib.error.HTTPError as exc:
        raise StageError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise StageError(f"cannot reach {url}: {exc.reason}") from None


def parse_tag(ref: str) -> tuple[str, str, str]:
    """'qwen2.5-coder:7b' -> ('library', 'qwen2.5-coder', '7b'); 'user/model:tag' keeps its namespace."""
    m = re.fullmatch(r"(?:([a-z0-9._-]+)/)?([a-z0-9._-]+)(?::([A-Za-z0-9._-]+))?", ref or "")
    if not m:
        raise StageError(f"--ollama {ref!r} is not an Ollama model reference: write <model>:<tag>, e.g. "
                         "qwen2.5-coder:7b-instruct-q4_K_M")
    return m.group(1) or "library", m.group(2), m.group(3) or "latest"


def pull(ref: str, revision: str, name: str, workdir: Path) -> Staged:
    """Fetch `ref`'s manifest, insist its digest is `revision`, then fetch and verify its blobs."""
    namespace, model, tag = parse_tag(ref)
    base = f"{_registry()}/v2/{namespace}/{model}"
    raw = _get(f"{base}/manifests/{tag}", MEDIA_TYPES)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    if not DIGEST.fullmatch(revision or ""):
        raise StageError(f"--revision {revision!r} is not a manifest digest: a tag such as {tag!r} can move. "
                         f"{ref} is {digest} today: review it and pass --revision {digest}")
    if digest != revision:
        raise StageError(f"{ref} now has manifest {digest}, not the pinned {revision}: the tag moved (or a mirror "
                         "altered it); review the new manifest before pinning it")
    try:
        doc = json.loads(raw)
        blobs = [doc["config"]] + list(doc["layers"])
        wanted = [(b["digest"], int(b["size"])) for b in blobs]
    except (ValueError, KeyError, TypeError):
        raise StageError(f"{ref}'s manifest is not an image manifest with config and layers") from None
    workdir.mkdir(parents=True, exist_ok=True)
    digests: dict[str, str] = {}
    for blob, size in wanted:
        if not DIGEST.fullmatch(blob):
            raise StageError(f"{ref}'s manifest lists a blob without a sha256 digest ({blob!r}): cannot verify it")
        rel = f"blobs/sha256-{blob.removeprefix('sha256:')}"
        path = workdir / rel
        if not (path.exists() and manifest.sha256_file(path) == blob.removeprefix("sha256:")):
            path.parent.mkdir(parents=True, exist_ok=True)
            data = _get(f"{base}/blobs/{blob}")
            got = hashlib.sha256(data).hexdigest()
            if got != blob.removeprefix("sha256:") or len(data) != size:
                raise StageError(f"blob {blob} of {ref} does not match its digest (got sha256:{got}, {len(data)} "
                                 f"bytes): nothing was uploaded")
            path.write_bytes(data)
        digests[rel] = blob.removeprefix("sha256:")
    rel = f"manifests/registry.ollama.ai/library/{name}/latest"
    (workdir / rel).parent.mkdir(parents=True, exist_ok=True)
    (workdir / rel).write_bytes(raw)
    digests[rel] = digest.removeprefix("sha256:")
    return Staged(repo=f"{namespace}/{model}:{tag}", revision=revision, root=workdir, digests=digests)

"""The EKS node-local model cache's fetch script, run for real with a stubbed AWS CLI: the first pod on a node
downloads, verifies and publishes <digest>/; the next one reuses it without touching S3; a cache entry that does
not match the pinned digest is never served; a tampered download publishes nothing."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest

from llm_platform.components.node_cache import CACHE_MOUNT, cached_fetch_script

FILES = {"config.json": b'{"hidden_size": 4096}', "model.safetensors": os.urandom(2048)}
AWS = """#!/bin/sh
set -eu
echo "aws $*" >> "$STUB_LOG"
src=""; dst=""; excl=""; prev=""
for a in "$@"; do
  case "$prev" in --exclude) excl="$a"; prev=""; continue;; esac
  case "$a" in s3://*) src="$FAKE_S3/${a#s3://}";; --exclude) prev=--exclude;; --*|cp|sync|s3) ;; *) dst="$a";; esac
done
if [ "$2" = cp ]; then cp "$src" "$dst"; exit 0; fi
mkdir -p "$dst"; (cd "$src" && find . -type f ! -name "$excl" -exec cp --parents {} "$dst" \\;)
"""


def _manifest(files):
    return "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(files.items()))


def _stage(tmp_path, files=FILES):
    b = tmp_path / "s3" / "bucket" / "models" / "m" / "rev"
    b.mkdir(parents=True, exist_ok=True)
    for n, d in files.items():
        (b / n).write_bytes(d)
    (b / "SHA256SUMS").write_text(_manifest(files))
    return hashlib.sha256(_manifest(files).encode()).hexdigest()


def _run(tmp_path, digest):
    root = tmp_path / "node"
    root.mkdir(exist_ok=True)
    work = tmp_path / "podtmp"
    work.mkdir(exist_ok=True)
    script = cached_fetch_script().replace("/tmp/", f"{work}/").replace(CACHE_MOUNT, str(root))
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "aws").write_text(AWS)
    (bindir / "aws").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_S3": str(tmp_path / "s3"),
           "STUB_LOG": str(tmp_path / "calls.log"), "MODEL_BUCKET": "bucket", "MODEL_PREFIX": "models/m/rev",
           "MANIFEST": "SHA256SUMS", "MANIFEST_SHA256": digest, "LLM_NAME": "m"}
    return subprocess.run(["sh", "-ec", script], capture_output=True, text=True, env=env, timeout=60), root


def test_first_pod_publishes_a_verified_copy_and_the_next_reuses_it(tmp_path):
    digest = _stage(tmp_path)
    first, root = _run(tmp_path, digest)
    assert first.returncode == 0 and "verified and published" in first.stdout, first.stderr
    entry = root / digest
    assert (entry / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    assert (entry / ".verified").read_text().split() == [digest, "models/m/rev"]
    assert not [p for p in root.iterdir() if p.name.startswith(".partial")]
    shutil.rmtree(tmp_path / "s3")
    (tmp_path / "calls.log").unlink()
    second, _ = _run(tmp_path, digest)
    assert second.returncode == 0 and "node cache: " in second.stdout and "verified against" in second.stdout
    assert not (tmp_path / "calls.log").exists()          # no S3 call at all


def test_an_entry_whose_manifest_does_not_hash_to_the_pin_is_replaced(tmp_path):
    digest = _stage(tmp_path)
    _, root = _run(tmp_path, digest)
    (root / digest).chmod(0o755)
    (root / digest / ".manifest").chmod(0o644)
    (root / digest / ".manifest").write_text("0" * 64 + "  config.json\n")
    proc, _ = _run(tmp_path, digest)
    assert proc.returncode == 0 and "verified and published" in proc.stdout, proc.stderr
    assert (root / digest / ".manifest").read_text() == _manifest(FILES)


def test_a_tampered_download_publishes_nothing(tmp_path):
    digest = _stage(tmp_path)
    (tmp_path / "s3/bucket/models/m/rev/model.safetensors").write_bytes(b"trojan")
    proc, root = _run(tmp_path, digest)
    assert proc.returncode != 0
    assert not (root / digest).exists() and not list(root.glob(".partial-*"))


def test_without_a_manifest_nothing_is_cached():
    env_manifest_missing = subprocess.run(["sh", "-ec", cached_fetch_script()], capture_output=True, text=True,
                                          env={**os.environ, "MANIFEST": "", "MANIFEST_SHA256": "", "LLM_NAME": "m"})
    assert env_manifest_missing.returncode != 0 and "only verified models" in env_manifest_missing.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (CI installs it)")
def test_the_cache_script_passes_shellcheck(tmp_path):
    f = tmp_path / "fetch.sh"
    f.write_text("#!/bin/sh\n" + cached_fetch_script())
    proc = subprocess.run(["shellcheck", "-S", "warning", str(f)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout

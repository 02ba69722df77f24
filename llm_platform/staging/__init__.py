"""`llm-platform stage`: a model, pinned and verified, into the air-gapped model store.

Run on a connected machine: download one revision (Hub commit or Ollama manifest digest), verify
every file against the source's own digests, write SHA256SUMS, upload to S3 (SSE-KMS, resumable,
manifest last), and hand back the stack config snippet that pins it. Not imported by the Pulumi
program or the planner: huggingface_hub and boto3 load only when staging runs.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import manifest
from .errors import StageError
from .hub import Staged
from .store import Store, UploadReport, upload

__all__ = ["StageError", "StageResult", "stage_hub", "stage_ollama", "default_name"]


@dataclass
class StageResult:
    staged: Staged
    report: UploadReport
    snippet: str
    config_path: Path | None


def default_name(model: str) -> str:
    """A deployment name from a repository id: 'Qwen/Qwen3-8B' -> 'qwen3-8b'."""
    base = model.rsplit("/", 1)[-1].split(":")[0].lower()
    name = re.sub(r"[^a-z0-9-]+", "-", base).strip("-")[:63].strip("-")
    return name or "model"


def _checked_name(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", name):
        raise StageError(f"--name {name!r} must be lowercase letters, digits and '-' (it becomes a DNS name)")
    return name


def stage_hub(model: str, revision: str, store_url: str, *, name: str | None = None,
              kms_key_id: str | None = None, workdir: Path | None = None, config_dir: Path = Path("."),
              code_revisions: dict[str, str] | None = None, exclude: list[str] | None = None,
              endpoint_url: str | None = None,
              region: str | None = None, progress: bool = True, **upload_args) -> StageResult:
    from llm_platform import catalog

    from . import hub
    name = _checked_name(name or default_name(model))
    hub.check_revision(revision)
    store = Store.parse(store_url)
    workdir = workdir or Path("llm-staging") / name / revision
    if not progress:
        from huggingface_hub.utils import disable_progress_bars
        disable_progress_bars()
    staged = hub.download(model, revision, workdir, code_revisions, exclude)
    report = upload(staged.root, staged.digests, store, name, revision, kms_key_id=kms_key_id,
                    endpoint_url=endpoint_url, region=region, progress=progress, **upload_args)
    config_path = None
    in_registry = model in catalog.load().models
    if not in_registry and staged.config is not None:
        config_path = config_dir / "models" / name / "config.json"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(staged.root / "config.json", config_path)
    entry = {"name": name, "model": model, "revision": revision,
             "checksums": {"manifest": manifest.MANIFEST, "sha256": report.manifest_sha256},
             "provenance": {"source": f"https://huggingface.co/{model}/tree/{revision}",
                            "license": staged.license or "FILL IN: the license the weights are used under",
                            "approved_by": "FILL IN: who approved this model",
                            "review_status": "pending"}}
    if config_path is not None:
        entry["architecture_file"] = f"models/{name}/config.json"    # relative to the stack file in config_dir
    notes = [f"staged to s3://{store.bucket}/{store.prefix(name, revision)}/ ({len(staged.digests)} files, "
             f"manifest sha256 {report.manifest_sha256})"]
    if config_path is not None:
        notes.append(f"{model} is not in the registry: its config.json is at {config_path}, beside the stack files "
                     "(architecture_file is relative to the stack file)")
    if staged.remote_code:
        notes.append("the model runs Python from its repository (auto_map): after review set review_status approved "
                     "and trust_remote_code: true; code from other repositories is recorded in "
                     "llm-platform-remote-code.json")
    return StageResult(staged, report, _snippet(entry, notes + _root_note(store)), config_path)


def stage_ollama(ref: str, revision: str, store_url: str, *, name: str | None = None, model: str | None = None,
                 kms_key_id: str | None = None, workdir: Path | None = None, endpoint_url: str | None = None,
                 region: str | None = None, progress: bool = True, **upload_args) -> StageResult:
    from llm_platform import catalog

    from . import ollama
    name = _checked_name(name or default_name(ref.replace(":", "-")))
    store = Store.parse(store_url)
    workdir = workdir or Path("llm-staging") / name / revision.replace(":", "-")
    staged = ollama.pull(ref, revision, name, workdir)
    report = upload(staged.root, staged.digests, store, name, revision, kms_key_id=kms_key_id,
                    endpoint_url=endpoint_url, region=region, progress=progress, **upload_args)
    entry: dict = {"name": name, "model": model or "FILL IN: the Hugging Face id this Ollama model is built from",
                   "runtime": "ollama"}
    precision = _ollama_precision(staged, catalog.load().precisions)
    if precision:
        entry["precision"] = precision
    entry.update({"revision": revision,
                  "checksums": {"manifest": manifest.MANIFEST, "sha256": report.manifest_sha256},
                  "provenance": {"source": f"https://ollama.com/{staged.repo.removeprefix('library/')}",
                                 "license": "FILL IN: the license the weights are used under",
                                 "approved_by": "FILL IN: who approved this model", "review_status": "pending"}})
    notes = [f"staged to s3://{store.bucket}/{store.prefix(name, revision)}/ as Ollama's models directory "
             f"({len(staged.digests)} files, manifest sha256 {report.manifest_sha256})"]
    return StageResult(staged, report, _snippet(entry, notes + _root_note(store)), None)


def _ollama_precision(staged: Staged, precisions: dict) -> str | None:
    """The GGUF file type the image config states (e.g. Q4_K_M), when the catalog sizes it."""
    for rel in staged.digests:
        if not rel.startswith("blobs/"):
            continue
        path = staged.root / rel
        if path.stat().st_size > 1 << 16:
            continue
        try:
            doc = json.loads(path.read_bytes())
        except ValueError:
            continue
        file_type = str(doc.get("file_type", "")).lower() if isinstance(doc, dict) else ""
        if file_type in precisions:
            return file_type
    return None


def _root_note(store: Store) -> list[str]:
    if not store.root:
        return []
    return [f"note: the platform's instances read models/<name>/<revision>/ at the root of their model store; "
            f"the prefix {store.root}/ suits a shared bucket, not the stack's own store"]


def _snippet(entry: dict, notes: list[str]) -> str:
    body = yaml.safe_dump({"llm-platform:models": [entry]}, sort_keys=False, width=120)
    head = "".join(f"# {n}\n" for n in notes)
    return head + "# add this entry under llm-platform:models in your Pulumi.<stack>.yaml:\n" + body

"""How a model whose code lives in another repository is staged so that it loads offline. Pure.

Some models ship no code of their own: their config.json `auto_map` names classes in another Hub
repository (`"AutoConfig": "nomic-ai/nomic-bert-2048--configuration_hf_nomic_bert.NomicBertConfig"`).
transformers resolves such a reference by downloading that repository's file at load time
(dynamic_module_utils.get_class_from_dynamic_module: "repo--module.Class"); with HF_HUB_OFFLINE=1, as
every runtime here runs, the download is refused and the server never starts (vLLM needs the
config class even though it has its own NomicBertModel: model_executor/models/config.py asserts
`config.__class__.__name__ == "NomicBertConfig"`).

The layout rules (the `stage` command follows them; `check_staged` verifies a staged directory):
1. Every auto_map reference of the form `<repo>--<module>.<Class>` must have a pinned revision of
   <repo> (catalog models.yaml `remote_code`); an unpinned one is an error, never "main".
2. `<module>.py` of every referenced module, plus every module those import relatively
   (`from .x import ...`, which transformers also resolves from the same place), is fetched from
   <repo> at that revision and written at the model's root, next to config.json.
3. config.json's auto_map is rewritten to the local form `<module>.<Class>`, which transformers
   loads from the model directory itself; nothing else in config.json changes.
4. REMOTE_CODE_RECORD (JSON: repo, revision, files with their SHA-256, the original auto_map) is
   written beside them, so a reviewer sees where the code came from.
5. SHA256SUMS lists all of these like any other file (the rewritten config.json, the .py files,
   the record): the boot verification refuses anything unlisted or changed.
The runtime still needs --trust-remote-code (the code is run, from a pinned, verified copy).
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REMOTE_CODE_RECORD = "llm-platform-remote-code.json"
MANIFEST = "SHA256SUMS"
# transformers.dynamic_module_utils.get_relative_imports uses these two patterns
_RELATIVE_IMPORTS = (re.compile(r"^\s*import\s+\.(\S+)\s*$", re.MULTILINE),
                     re.compile(r"^\s*from\s+\.(\S+)\s+import", re.MULTILINE))
_SHA = re.compile(r"[0-9a-f]{40}")


class RemoteCodeError(ValueError):
    pass


def _parse(key: str, value: str) -> tuple[str | None, str, str]:
    repo, _, ref = value.rpartition("--") if "--" in value else (None, "", value)
    module, _, cls = ref.rpartition(".")
    if not module or not cls:
        raise RemoteCodeError(f"auto_map.{key}: '{value}' is not <module>.<Class> or <repo>--<module>.<Class>")
    return repo or None, module, cls


def references(config: dict[str, Any]) -> list[tuple[str, str | None, str, str]]:
    """(auto_map key, repo or None when local, module, class) for each auto_map entry. A value may be a
    list (tokenizers: [slow, fast]); None entries are skipped."""
    out = []
    for key, value in sorted((config.get("auto_map") or {}).items()):
        for v in value if isinstance(value, list) else [value]:
            if v:
                out.append((key, *_parse(key, v)))
    return out


def external_repos(config: dict[str, Any]) -> set[str]:
    return {repo for _, repo, _, _ in references(config) if repo}


def relative_imports(source: str) -> set[str]:
    """Modules a remote-code file imports relatively (`from .x import y`): they must be staged too."""
    found: set[str] = set()
    for pattern in _RELATIVE_IMPORTS:
        found |= {m.split(".")[0] for m in pattern.findall(source)}
    return found


def localize(config: dict[str, Any]) -> dict[str, Any]:
    """config.json with every `<repo>--<module>.<Class>` auto_map value made local (`<module>.<Class>`)."""
    def local(v: Any) -> Any:
        if isinstance(v, list):
            return [local(x) for x in v]
        return v.rpartition("--")[2] if isinstance(v, str) and "--" in v else v

    out = dict(config)
    if "auto_map" in out:
        out["auto_map"] = {k: local(v) for k, v in out["auto_map"].items()}
    return out


@dataclass(frozen=True)
class StagingStep:
    """What the stage command fetches and writes for one model's remote code."""
    fetch: tuple[tuple[str, str, str], ...]          # (repo, revision, file name) to download
    config: dict[str, Any]                                      # the config.json to write instead of the original
    original_auto_map: dict[str, Any] = field(default_factory=dict)


def plan_staging(config: dict[str, Any], pins: Mapping[str, str], model: str = "the model") -> StagingStep:
    """Rules 1-3 for a config.json. `pins`: repo -> 40-hex revision (catalog models.yaml remote_code)."""
    fetch = []
    for key, repo, module, _ in references(config):
        if repo is None:
            continue
        rev = pins.get(repo)
        if rev is None:
            raise RemoteCodeError(f"{model}: config.json auto_map.{key} loads code from {repo}, which has no pinned "
                                  f"revision: add remote_code (repo: {repo}, revision: <40-hex commit>) to its "
                                  "catalog entry after reviewing that code")
        if not _SHA.fullmatch(rev):
            raise RemoteCodeError(f"{model}: remote code {repo} must be pinned to a 40-hex commit, not '{rev}'")
        item = (repo, rev, f"{module}.py")
        if item not in fetch:
            fetch.append(item)
    return StagingStep(fetch=tuple(fetch), config=localize(config),
                       original_auto_map=dict(config.get("auto_map") or {}))


def fetch_closure(step: StagingStep, read: Callable[[str, str, str], bytes]) -> dict[str, bytes]:
    """Rule 2: the files to write at the model's root, name -> bytes, following relative imports.
    `read(repo, revision, file name)` downloads one file (huggingface_hub.hf_hub_download in the stage
    command, a dict in tests). A relative import is looked up in the repository of the file importing it."""
    files: dict[str, bytes] = {}
    pending = list(step.fetch)
    while pending:
        repo, rev, name = pending.pop(0)
        if name in files:
            continue
        files[name] = read(repo, rev, name)
        pending += [(repo, rev, f"{m}.py") for m in sorted(relative_imports(files[name].decode()))]
    return files


def record(step: StagingStep, files: Mapping[str, bytes]) -> dict[str, Any]:
    """Rule 4: the provenance record written as REMOTE_CODE_RECORD. `files`: name -> bytes as staged."""
    repos = sorted({(repo, rev) for repo, rev, _ in step.fetch})
    return {"sources": [{"repo": r, "revision": v} for r, v in repos],
            "files": {n: hashlib.sha256(b).hexdigest() for n, b in sorted(files.items())},
            "original_auto_map": step.original_auto_map}


def check_staged(model_dir: Path) -> list[str]:
    """Problems that would make the runtime reach for the Hub (or run unverified code); [] when loadable
    offline. Checks rules 2, 3 and 5 on a staged directory."""
    problems = []
    cfg_path = model_dir / "config.json"
    if not cfg_path.exists():
        return []
    config = json.loads(cfg_path.read_text())
    listed = set()
    if (model_dir / MANIFEST).exists():
        listed = {line.split(None, 1)[1].lstrip("*").strip() for line in (model_dir / MANIFEST).read_text().splitlines()
                  if line.strip()}
    pending = []
    for key, repo, module, _ in references(config):
        if repo:
            problems.append(f"auto_map.{key} still points at {repo}: transformers would fetch it from the Hub")
        pending.append(module)
    seen: set[str] = set()
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        path = model_dir / f"{module}.py"
        if not path.exists():
            problems.append(f"{module}.py (auto_map or a relative import) is not staged next to config.json")
            continue
        if listed and path.name not in listed:
            problems.append(f"{path.name} is not listed in {MANIFEST}")
        pending += sorted(relative_imports(path.read_text()))
    if seen and listed and REMOTE_CODE_RECORD not in listed:
        problems.append(f"{REMOTE_CODE_RECORD} (where the code came from) is missing from {MANIFEST}")
    return problems


def stage_remote_code(model_dir: Path, pins: Mapping[str, str], read: Callable[[str, str, str], bytes],
                      model: str = "the model") -> list[str]:
    """Apply rules 1-4 to a downloaded snapshot in `model_dir`; the names written (all must then be in
    SHA256SUMS, rule 5). Nothing is written when config.json references no other repository."""
    cfg_path = model_dir / "config.json"
    config = json.loads(cfg_path.read_text())
    step = plan_staging(config, pins, model)
    if not step.fetch:
        return []
    files = fetch_closure(step, read)
    for name, data in files.items():
        (model_dir / name).write_bytes(data)
    cfg_path.write_text(json.dumps(step.config, indent=2) + "\n")
    (model_dir / REMOTE_CODE_RECORD).write_text(json.dumps(record(step, files), indent=2, sort_keys=True) + "\n")
    return ["config.json", *sorted(files), REMOTE_CODE_RECORD]

"""Download one pinned commit of a Hugging Face model repository and prove every byte of it.

Each file is checked against the Hub's own record for that commit (model_info with files_metadata):
LFS files against their LFS sha256, the small files git stores directly against their git blob id.
A weight file without an LFS digest, a digest that differs, or a file the commit does not list
stops the staging. The token comes from HF_TOKEN and goes to huggingface_hub only; nothing here
prints or logs it. HF_ENDPOINT (a mirror, or the tests' fake Hub) is read at call time.

Remote code: a config.json `auto_map` entry names a module of this repository ("modeling_x.Class",
downloaded with the commit) or of another one ("org/repo--modeling_x.Class"). The other repository's
module is staged at a pinned commit (`code_revisions`) under remote_code/<org>/<repo>/, listed in
SHA256SUMS like every other file, and described in remote_code.json for the runtime.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import manifest
from .errors import StageError

COMMIT = re.compile(r"^[0-9a-f]{40}$")
# files that hold weights: the Hub stores them in LFS, and the staging insists on the LFS sha256
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".ckpt", ".h5", ".msgpack", ".onnx", ".npz")


@dataclass
class Staged:
    """A verified local copy of one commit."""
    repo: str
    revision: str
    root: Path
    digests: dict[str, str]               # relative path -> sha256 (everything SHA256SUMS lists)
    license: str | None = None
    config: dict | None = None
    remote_code: list[dict] = field(default_factory=list)


def check_revision(revision: str, what: str = "--revision") -> str:
    if not COMMIT.fullmatch(revision or ""):
        kind = "a branch or tag name" if re.fullmatch(r"[\w./-]+", revision or "") else "not a commit id"
        raise StageError(f"{what} {revision!r} is {kind}: it can move after review. Pin the 40-hex commit id "
                         "(the model page's 'Files and versions' history, or `HfApi().model_info(repo).sha`)")
    return revision


def _api():
    from huggingface_hub import HfApi
    return HfApi(endpoint=_endpoint(), token=_token())


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def _token():
    return os.environ.get("HF_TOKEN") or False       # False: never fall back to a token file on disk


def _info(repo: str, revision: str):
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError
    try:
        info = _api().model_info(repo, revision=revision, files_metadata=True)
    except RevisionNotFoundError:
        raise StageError(f"{repo} has no commit {revision}: check the revision (a commit of this repository, "
                         "not of a fork or another model)") from None
    except GatedRepoError:
        raise StageError(f"{repo} is gated: accept its license on the Hub and set HF_TOKEN to a read token "
                         "of that account") from None
    except RepositoryNotFoundError:
        raise StageError(f"{repo} is not a model repository the Hub shows to this token (private or misspelt); "
                         "set HF_TOKEN for a private repository") from None
    except Exception as exc:             # network, TLS, 5xx: say what failed without the request's headers
        raise StageError(f"cannot read {repo}@{revision} from the Hub: {type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    if info.sha != revision:
        raise StageError(f"the Hub resolved {repo}@{revision} to {info.sha}: refusing a revision that is not the "
                         "commit itself")
    return info


def _expected(repo: str, siblings) -> dict[str, tuple[str, str]]:
    """path -> (kind, digest): ('sha256', lfs oid) or ('blob', git blob id)."""
    out, missing = {}, []
    for s in siblings:
        if s.lfs is not None and getattr(s.lfs, "sha256", None):
            out[s.rfilename] = ("sha256", s.lfs.sha256)
        elif s.rfilename.endswith(WEIGHT_SUFFIXES) or not s.blob_id:
            missing.append(s.rfilename)
        else:
            out[s.rfilename] = ("blob", s.blob_id)
    if missing:
        raise StageError(f"the Hub lists no LFS sha256 for {', '.join(missing)} in {repo}: these files cannot be "
                         "verified against the Hub, so nothing is staged")
    return out


def download(repo: str, revision: str, workdir: Path, code_revisions: dict[str, str] | None = None,
             include: list[str] | None = None) -> Staged:
    """Download and verify `repo` at `revision` into `workdir`; raise StageError on any mismatch."""
    from huggingface_hub import hf_hub_download
    check_revision(revision)
    info = _info(repo, revision)
    expected = _expected(repo, info.siblings or [])
    if include:
        import fnmatch
        expected = {p: e for p, e in expected.items() if any(fnmatch.fnmatch(p, pat) for pat in include)}
    if not expected:
        raise StageError(f"{repo}@{revision} lists no files to stage")
    workdir.mkdir(parents=True, exist_ok=True)
    digests: dict[str, str] = {}
    for path, (kind, want) in sorted(expected.items()):
        local = Path(hf_hub_download(repo, path, revision=revision, local_dir=workdir, endpoint=_endpoint(),
                                     token=_token()))
        got = manifest.sha256_file(local) if kind == "sha256" else manifest.git_blob_sha1(local)
        if got != want:
            local.unlink()
            what = "LFS sha256" if kind == "sha256" else "git blob id"
            raise StageError(f"{path} of {repo}@{revision} does not match the Hub's {what}: expected {want}, "
                             f"downloaded {got}. Nothing was uploaded; a proxy or mirror altered the file")
        digests[path] = got if kind == "sha256" else manifest.sha256_file(local)
    unexpected = set(manifest.files_under(workdir)) - set(digests)
    for extra in unexpected:         # leftovers of an earlier run in the same directory
        (workdir / extra).unlink()
    config = None
    if "config.json" in digests:
        config = json.loads((workdir / "config.json").read_text(encoding="utf-8"))
    card = getattr(info, "card_data", None) or {}
    license_ = card.get("license") if hasattr(card, "get") else None
    staged = Staged(repo, revision, workdir, digests, license_, config)
    _stage_remote_code(staged, code_revisions or {})
    return staged


def auto_map_modules(config: dict | None) -> dict[str, set[str]]:
    """repo ('' for this one) -> module files an auto_map names."""
    out: dict[str, set[str]] = {}
    entries = (config or {}).get("auto_map") or {}
    for ref in entries.values():
        for item in ref if isinstance(ref, list) else [ref]:
            if not isinstance(item, str):
                continue
            repo, _, dotted = item.rpartition("--")
            module = dotted.rsplit(".", 1)[0]
            out.setdefault(repo, set()).add(module.replace(".", "/") + ".py")
    return out


def _stage_remote_code(staged: Staged, code_revisions: dict[str, str]) -> None:
    from huggingface_hub import hf_hub_download
    for repo, modules in sorted(auto_map_modules(staged.config).items()):
        if repo == "":
            absent = sorted(m for m in modules if m not in staged.digests)
            if absent:
                raise StageError(f"config.json's auto_map names {absent}, which {staged.repo}@{staged.revision} "
                                 "does not contain")
            staged.remote_code.append({"repo": staged.repo, "revision": staged.revision, "files": sorted(modules),
                                       "path": "."})
            continue
        pinned = code_revisions.get(repo)
        if pinned is None:
            raise StageError(f"config.json's auto_map loads code from another repository, {repo}: pin it with "
                             f"--code-revision {repo}=<40-hex commit> after reviewing that code")
        check_revision(pinned, f"--code-revision {repo}=")
        info = _info(repo, pinned)
        expected = _expected(repo, [s for s in info.siblings or [] if s.rfilename.endswith(".py")])
        target = staged.root / "remote_code" / repo
        files = []
        for module in sorted(modules):
            if module not in expected:
                raise StageError(f"{repo}@{pinned} has no {module}, which config.json's auto_map names")
        for path, (kind, want) in sorted(expected.items()):     # the modules and the helpers they import
            local = Path(hf_hub_download(repo, path, revision=pinned, local_dir=target, endpoint=_endpoint(),
                                         token=_token()))
            got = manifest.sha256_file(local) if kind == "sha256" else manifest.git_blob_sha1(local)
            if got != want:
                shutil.rmtree(target)
                raise StageError(f"{path} of {repo}@{pinned} does not match the Hub's digest: expected {want}, "
                                 f"downloaded {got}")
            rel = f"remote_code/{repo}/{path}"
            staged.digests[rel] = manifest.sha256_file(local)
            files.append(path)
        shutil.rmtree(target / ".cache", ignore_errors=True)
        staged.remote_code.append({"repo": repo, "revision": pinned, "files": files, "path": f"remote_code/{repo}"})
    if staged.remote_code:
        doc = json.dumps({"auto_map": (staged.config or {}).get("auto_map"), "sources": staged.remote_code},
                         indent=2, sort_keys=True) + "\n"
        (staged.root / "remote_code.json").write_text(doc, encoding="utf-8")
        staged.digests["remote_code.json"] = manifest.sha256_file(staged.root / "remote_code.json")

"""Download one pinned commit of a Hugging Face model repository and prove every byte of it.

Each file is checked against the Hub's own record for that commit (model_info with files_metadata):
LFS files against their LFS sha256, the small files git stores directly against their git blob id.
A weight file without an LFS digest, a digest that differs, or a file the commit does not list
stops the staging. The token comes from HF_TOKEN and goes to huggingface_hub only; nothing here
prints or logs it. HF_ENDPOINT (a mirror, or the tests' fake Hub) is read at call time.

Remote code: a config.json `auto_map` entry names a module of this repository ("modeling_x.Class",
downloaded with the commit) or of another one ("org/repo--modeling_x.Class"), which transformers would
fetch at load time and an air-gapped runtime cannot. The other repository's module, and the modules it
imports relatively, are fetched at a pinned commit (`code_revisions`), verified against that commit's
digests, written next to config.json, config.json's auto_map is made local, and the provenance goes to
llm-platform-remote-code.json; SHA256SUMS lists all of it.
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


def _claim(workdir: Path, what: str) -> None:
    """Use `workdir` only if it is empty or holds an earlier run for the same revision: files that are not
    the revision's are removed from it, so it must never be a directory with anything else in it."""
    marker = workdir / ".cache" / "llm-platform-stage"
    if marker.is_file():
        if marker.read_text(encoding="utf-8").strip() != what:
            raise StageError(f"--workdir {workdir} holds a staging of {marker.read_text().strip()}, not {what}: "
                             "use another directory")
        return
    if workdir.exists() and any(workdir.iterdir()):
        raise StageError(f"--workdir {workdir} is not empty and was not made by `llm-platform stage`: "
                         "use an empty or new directory")
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(what + "\n", encoding="utf-8")


def download(repo: str, revision: str, workdir: Path, code_revisions: dict[str, str] | None = None,
             exclude: list[str] | None = None) -> Staged:
    """Download and verify `repo` at `revision` into `workdir`; raise StageError on any mismatch."""
    from huggingface_hub import hf_hub_download
    check_revision(revision)
    info = _info(repo, revision)
    expected = _expected(repo, info.siblings or [])
    if exclude:       # e.g. original/* : Llama repositories also ship the weights in Meta's own format
        import fnmatch
        expected = {p: e for p, e in expected.items() if not any(fnmatch.fnmatch(p, pat) for pat in exclude)}
    if not expected:
        raise StageError(f"{repo}@{revision} lists no files to stage")
    _claim(workdir, f"{repo}@{revision}")
    digests: dict[str, str] = {}
    for path, (kind, want) in sorted(expected.items()):
        local = workdir / path
        if local.is_file():       # from an earlier run: kept if it is still the Hub's file, else fetched again
            got = manifest.sha256_file(local) if kind == "sha256" else manifest.git_blob_sha1(local)
            if got == want:
                digests[path] = got if kind == "sha256" else manifest.sha256_file(local)
                continue
            local.unlink()
        local = Path(hf_hub_download(repo, path, revision=revision, local_dir=workdir, endpoint=_endpoint(),
                                     token=_token()))     # resumes its own partial download
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


def _stage_remote_code(staged: Staged, code_revisions: dict[str, str]) -> None:
    """Remote code by the runtime's layout rules (serving/remote_code.py): modules another repository provides
    are fetched at their pinned commit (the registry's `remote_code`, or --code-revision), each verified
    against that commit's Hub digests, written next to config.json, auto_map made local, a provenance
    record added; `check_staged` must then find nothing that would reach for the Hub."""
    from huggingface_hub import hf_hub_download

    from llm_platform import catalog
    from llm_platform.serving import remote_code as rc
    config = staged.config or {}
    for key, repo, module, _ in rc.references(config):
        if repo is None and f"{module}.py" not in staged.digests:
            raise StageError(f"config.json auto_map.{key} names {module}.py, which {staged.repo}@{staged.revision} "
                             "does not contain")
    entry = catalog.load().models.get(staged.repo)
    pins = {p.repo: p.revision for p in (entry.remote_code if entry is not None else ())}
    pins.update(code_revisions)
    for repo in sorted(rc.external_repos(config)):
        if repo not in pins:
            raise StageError(f"config.json's auto_map loads code from another repository, {repo}: pin it with "
                             f"--code-revision {repo}=<40-hex commit> after reviewing that code")
        check_revision(pins[repo], f"--code-revision {repo}=")
    expected: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}

    def read(repo: str, revision: str, name: str) -> bytes:
        if (repo, revision) not in expected:
            siblings = [s for s in _info(repo, revision).siblings or [] if s.rfilename.endswith(".py")]
            expected[(repo, revision)] = _expected(repo, siblings)
        if name in staged.digests:
            raise StageError(f"{name} from {repo} would overwrite a file of the same name in {staged.repo}")
        if name not in expected[(repo, revision)]:
            raise StageError(f"{repo}@{revision} has no {name}, which config.json's auto_map (or a relative "
                             "import) needs")
        kind, want = expected[(repo, revision)][name]
        local = Path(hf_hub_download(repo, name, revision=revision, local_dir=staged.root / ".cache" / "remote-code"
                                     / repo, endpoint=_endpoint(), token=_token()))
        got = manifest.sha256_file(local) if kind == "sha256" else manifest.git_blob_sha1(local)
        if got != want:
            raise StageError(f"{name} of {repo}@{revision} does not match the Hub's digest: expected {want}, "
                             f"downloaded {got}")
        return local.read_bytes()

    try:
        written = rc.stage_remote_code(staged.root, pins, read, staged.repo)
    except rc.RemoteCodeError as exc:
        raise StageError(str(exc)) from None
    finally:
        shutil.rmtree(staged.root / ".cache" / "remote-code", ignore_errors=True)
    for name in written:
        staged.digests[name] = manifest.sha256_file(staged.root / name)
    problems = rc.check_staged(staged.root)
    if problems:
        raise StageError(f"{staged.repo}@{staged.revision} would not load offline: {'; '.join(problems)}")
    if written:
        rec = json.loads((staged.root / rc.REMOTE_CODE_RECORD).read_text(encoding="utf-8"))
        staged.remote_code += rec.get("sources", [])
    elif rc.references(config):
        staged.remote_code.append({"repo": staged.repo, "revision": staged.revision})

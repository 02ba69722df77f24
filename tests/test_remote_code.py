"""nomic-embed on vLLM with HF_HUB_OFFLINE=1: its config.json loads NomicBertConfig from another repository.
The staged layout (serving/remote_code.py) must load with transformers' own AutoConfig, offline, exactly as
the runtime does; the unstaged one must fail the same way it failed in production."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm_platform import catalog
from llm_platform.serving.remote_code import (
    MANIFEST,
    REMOTE_CODE_RECORD,
    RemoteCodeError,
    check_staged,
    external_repos,
    localize,
    plan_staging,
    relative_imports,
    stage_remote_code,
)
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "remote_code"
NOMIC = "nomic-ai/nomic-embed-text-v1.5"
CODE_REPO = "nomic-ai/nomic-bert-2048"

LOAD = """
import json, sys
from transformers import AutoConfig
out = {}
for d in sys.argv[1:]:
    try:
        c = AutoConfig.from_pretrained(d, trust_remote_code=True)
        out[d] = {"class": type(c).__name__, "model_type": c.model_type, "n_embd": c.n_embd}
    except Exception as e:  # noqa: BLE001 - the message is the result
        out[d] = {"error": f"{type(e).__name__}: {e}"}
print(json.dumps(out))
"""


def pins() -> dict:
    return {p.repo: p.revision for p in catalog.load().models[NOMIC].remote_code}


def hub_reader(calls: list):
    """What hf_hub_download returns, from the stand-ins in tests/data (the real files need the network)."""
    def read(repo: str, revision: str, name: str) -> bytes:
        calls.append((repo, revision, name))
        assert repo == CODE_REPO
        return (DATA / name).read_bytes()
    return read


def snapshot(dest: Path) -> Path:
    dest.mkdir(parents=True)
    (dest / "config.json").write_bytes((DATA / "nomic-embed-text-v1.5.config.json").read_bytes())
    (dest / "model.safetensors").write_bytes(b"\0" * 64)
    return dest


def write_manifest(model_dir: Path) -> None:
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in sorted(model_dir.iterdir())
             if p.is_file() and p.name != MANIFEST]
    (model_dir / MANIFEST).write_text("".join(lines))


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote-code")
    unstaged = snapshot(root / "unstaged")
    staged = snapshot(root / "staged")
    calls: list = []
    written = stage_remote_code(staged, pins(), hub_reader(calls), model=NOMIC)
    write_manifest(staged)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(root / "hf-home")}
    proc = subprocess.run([sys.executable, "-c", LOAD, str(unstaged), str(staged)], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"unstaged": unstaged, "staged": staged, "written": written, "calls": calls,
            "loaded_unstaged": loaded[str(unstaged)], "loaded_staged": loaded[str(staged)]}


def test_the_published_config_cannot_load_offline(staged):
    # the production failure, reproduced: transformers reaches for nomic-ai/nomic-bert-2048 on the Hub
    assert "huggingface.co" in staged["loaded_unstaged"].get("error", ""), staged["loaded_unstaged"]
    assert check_staged(staged["unstaged"]) != []


def test_the_staged_layout_loads_offline_with_transformers(staged):
    assert staged["loaded_staged"] == {"class": "NomicBertConfig", "model_type": "nomic_bert", "n_embd": 768}
    assert check_staged(staged["staged"]) == []


def test_staging_fetches_the_pinned_revision_and_follows_relative_imports(staged):
    rev = pins()[CODE_REPO]
    assert {(r, v) for r, v, _ in staged["calls"]} == {(CODE_REPO, rev)}
    assert {n for _, _, n in staged["calls"]} == {"configuration_hf_nomic_bert.py", "modeling_hf_nomic_bert.py",
                                                  "bert_padding.py"}
    assert set(staged["written"]) == {"config.json", REMOTE_CODE_RECORD, "configuration_hf_nomic_bert.py",
                                      "modeling_hf_nomic_bert.py", "bert_padding.py"}
    record = json.loads((staged["staged"] / REMOTE_CODE_RECORD).read_text())
    assert record["sources"] == [{"repo": CODE_REPO, "revision": rev}]
    assert record["original_auto_map"]["AutoConfig"].startswith(CODE_REPO + "--")
    config = json.loads((staged["staged"] / "config.json").read_text())
    assert config["auto_map"]["AutoConfig"] == "configuration_hf_nomic_bert.NomicBertConfig"
    original = json.loads((DATA / "nomic-embed-text-v1.5.config.json").read_text())
    assert {k: v for k, v in config.items() if k != "auto_map"} == {k: v for k, v in original.items()
                                                                     if k != "auto_map"}


def test_every_repository_the_catalog_model_loads_code_from_is_pinned():
    config = json.loads((DATA / "nomic-embed-text-v1.5.config.json").read_text())
    assert external_repos(config) == {CODE_REPO}
    assert set(pins()) >= external_repos(config)
    # every catalog model that needs remote code and names another repository carries a pin for it
    for info in catalog.load().models.values():
        for pin in info.remote_code:
            assert info.trust_remote_code and len(pin.revision) == 40 and pin.source


def test_staged_code_outside_the_manifest_is_reported(staged, tmp_path):
    copy = tmp_path / "m"
    copy.mkdir()
    for p in staged["staged"].iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    manifest = (copy / MANIFEST).read_text().splitlines()
    (copy / MANIFEST).write_text("".join(f"{line}\n" for line in manifest if "bert_padding" not in line))
    assert check_staged(copy) == ["bert_padding.py is not listed in SHA256SUMS"]
    (copy / "bert_padding.py").unlink()
    assert any("bert_padding.py (auto_map or a relative import) is not staged" in p for p in check_staged(copy))


def test_unpinned_or_floating_code_is_refused():
    config = json.loads((DATA / "nomic-embed-text-v1.5.config.json").read_text())
    with pytest.raises(RemoteCodeError, match="nomic-ai/nomic-bert-2048, which has no pinned revision"):
        plan_staging(config, {}, model=NOMIC)
    with pytest.raises(RemoteCodeError, match="40-hex commit, not 'main'"):
        plan_staging(config, {CODE_REPO: "main"}, model=NOMIC)


def test_local_auto_map_and_relative_import_rules():
    assert localize({"auto_map": {"AutoTokenizer": ["a/b--tok.Slow", None], "AutoConfig": "cfg.C"}}) == {
        "auto_map": {"AutoTokenizer": ["tok.Slow", None], "AutoConfig": "cfg.C"}}
    assert relative_imports("from .a import x\nimport .b\nfrom .c.d import e\nfrom e import f\n") == {"a", "b", "c"}
    assert plan_staging({"auto_map": {"AutoConfig": "cfg.C"}}, {}).fetch == ()     # code inside the repo: nothing

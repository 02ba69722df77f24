"""`llm-platform stage` end to end with the real clients and no network: huggingface_hub against a fake Hub on
127.0.0.1, boto3 against moto's S3 server on 127.0.0.1. A staged model plans and passes the instance's own
boot verification; a branch name, a wrong commit, a tampered file, a missing LFS digest or an interrupted
upload each stop with a clear message and never leave a revision marked complete."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys

import pytest
import yaml

from llm_platform import staging
from llm_platform.cli import main
from llm_platform.settings import parse
from llm_platform.sizing.planner import plan_stack
from tests.conftest import MINIMAL
from tests.fake_hub import FakeHub, Repo

COMMIT = "3f1c2a9b8e7d6c5b4a39281706f5e4d3c2b1a098"
CODE_COMMIT = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
TOKEN = "hf_FakeReadTokenForTheFakeHub0123456789"
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
TINY_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 256,
               "intermediate_size": 688, "num_attention_heads": 8, "num_key_value_heads": 4, "num_hidden_layers": 4,
               "vocab_size": 32000, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
               "tie_word_embeddings": False, "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2}
WEIGHTS = os.urandom(6 * 2 ** 20 + 12345)      # > 5 MiB: two multipart parts at a 5 MiB chunk size


def _files(config: dict) -> dict[str, bytes]:
    return {"config.json": json.dumps(config, indent=2).encode(), "generation_config.json": b'{"do_sample": true}',
            "model.safetensors": WEIGHTS, "tokenizer.json": b'{"version": "1.0", "model": {"type": "BPE"}}'}


@pytest.fixture
def hub(monkeypatch, tmp_path):
    with FakeHub() as h:
        h.repos["acme/tiny-llama"] = Repo(COMMIT, _files(TINY_CONFIG), {"model.safetensors"}, {"main": COMMIT})
        remote = dict(TINY_CONFIG, auto_map={"AutoConfig": "configuration_tiny.TinyConfig",
                                              "AutoModel": "acme/tiny-code--modeling_tiny.TinyModel"})
        own_code = {"configuration_tiny.py": b"class TinyConfig: ...\n"}
        h.repos["acme/tiny-remote"] = Repo(COMMIT, {**_files(remote), **own_code}, {"model.safetensors"})
        code = {"modeling_tiny.py": b"from .layers import x\nclass TinyModel: ...\n", "layers.py": b"x = 1\n",
                "README.md": b"# code\n"}
        h.repos["acme/tiny-code"] = Repo(CODE_COMMIT, code, set())
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.setenv("OLLAMA_REGISTRY", h.url)
        yield h


@pytest.fixture(scope="module")
def moto_url():
    import logging

    from moto.server import ThreadedMotoServer
    logging.getLogger("werkzeug").setLevel(logging.ERROR)     # the server's per-request access log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_url, monkeypatch, request):
    import boto3
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    client = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")
    bucket = "llm-test-models-" + hashlib.sha1(request.node.name.encode()).hexdigest()[:12]
    client.create_bucket(Bucket=bucket)
    client.bucket = bucket
    return client


def _keys(s3) -> dict[str, dict]:
    out = {}
    for obj in s3.list_objects_v2(Bucket=s3.bucket).get("Contents", []):
        out[obj["Key"]] = s3.head_object(Bucket=s3.bucket, Key=obj["Key"])
    return out


def _stage(moto_url, s3, tmp_path, *extra, capsys=None, model="acme/tiny-llama", revision=COMMIT):
    argv = ["stage", "--model", model, "--revision", revision, "--store", f"s3://{s3.bucket}",
            "--kms-key-id", KMS_KEY, "--endpoint-url", moto_url, "--region", "us-east-1",
            "--workdir", str(tmp_path / "work"), "--config-dir", str(tmp_path / "project"), "--no-progress", *extra]
    code = main(argv)
    out = capsys.readouterr() if capsys else None
    return code, out


def _plan(snippet: str, base_dir):
    entry = yaml.safe_load(snippet)["llm-platform:models"][0]
    raw = copy.deepcopy(MINIMAL)
    raw["llm-platform:models"] = [entry]
    (plan,) = plan_stack(parse(raw, base_dir=base_dir))
    return entry, plan


def test_stage_round_trips_into_the_store_plans_and_passes_the_boot_verification(hub, s3, moto_url, tmp_path, capsys):
    code, out = _stage(moto_url, s3, tmp_path, capsys=capsys)
    assert code == 0, out.err
    prefix = f"models/tiny-llama/{COMMIT}"
    objects = _keys(s3)
    files = _files(TINY_CONFIG)
    assert set(objects) == {f"{prefix}/{p}" for p in files} | {f"{prefix}/SHA256SUMS"}
    for key, head in objects.items():
        assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == KMS_KEY, key
    manifest = s3.get_object(Bucket=s3.bucket, Key=f"{prefix}/SHA256SUMS")["Body"].read().decode()
    assert manifest == "".join(f"{hashlib.sha256(files[p]).hexdigest()}  {p}\n" for p in sorted(files))
    weights = s3.get_object(Bucket=s3.bucket, Key=f"{prefix}/model.safetensors")["Body"].read()
    assert weights == WEIGHTS
    # the printed snippet is a stack config entry that validates and plans
    entry, plan = _plan(out.out, tmp_path / "project")
    assert entry["revision"] == COMMIT and entry["architecture_file"] == "models/tiny-llama/config.json"
    assert entry["checksums"] == {"manifest": "SHA256SUMS", "sha256": hashlib.sha256(manifest.encode()).hexdigest()}
    assert entry["provenance"]["source"] == f"https://huggingface.co/acme/tiny-llama/tree/{COMMIT}"
    assert entry["provenance"]["license"] == "apache-2.0" and entry["provenance"]["review_status"] == "pending"
    assert plan.revision == COMMIT and plan.parameters > 0
    # the token went to the Hub, and nowhere else
    assert TOKEN not in out.out + out.err
    assert any(h.get("authorization") == f"Bearer {TOKEN}" or h.get("Authorization") == f"Bearer {TOKEN}"
               for _, _, h in hub.requests)
    # what the instance runs at boot accepts it
    proc, model_dir = _boot_fetch(s3, tmp_path, plan, prefix, entry["checksums"]["sha256"])
    assert proc.returncode == 0, proc.stderr
    assert (model_dir / "model.safetensors").read_bytes() == WEIGHTS


def test_a_second_run_finds_the_revision_complete_and_uploads_nothing(hub, s3, moto_url, tmp_path, capsys):
    assert _stage(moto_url, s3, tmp_path, capsys=capsys)[0] == 0
    hub.requests.clear()
    code, out = _stage(moto_url, s3, tmp_path, capsys=capsys)
    assert code == 0 and "already staged" in out.err
    # the verified local copy is reused: only the Hub's file list is read again, no file is downloaded
    assert [p for m, p, _ in hub.requests if "/resolve/" in p] == []


def test_a_branch_name_is_refused_before_anything_is_fetched(hub, s3, moto_url, tmp_path, capsys):
    code, out = _stage(moto_url, s3, tmp_path, capsys=capsys, revision="main")
    assert code == 1 and "'main' is a branch or tag name" in out.err and "40-hex commit" in out.err
    assert hub.requests == [] and _keys(s3) == {}


def test_a_commit_the_repository_does_not_have_is_refused(hub, s3, moto_url, tmp_path, capsys):
    code, out = _stage(moto_url, s3, tmp_path, capsys=capsys, revision="0" * 40)
    assert code == 1 and f"acme/tiny-llama has no commit {'0' * 40}" in out.err
    assert _keys(s3) == {}


def test_a_tampered_file_is_refused_and_nothing_is_uploaded(hub, s3, moto_url, tmp_path, capsys):
    hub.repos["acme/tiny-llama"].served["model.safetensors"] = WEIGHTS[:-4] + b"evil"
    code, out = _stage(moto_url, s3, tmp_path, capsys=capsys)
    assert code == 1 and "model.safetensors of acme/tiny-llama" in out.err
    assert f"expected {hashlib.sha256(WEIGHTS).hexdigest()}" in out.err
    assert _keys(s3) == {}
    assert not (tmp_path / "work" / "model.safetensors").exists()


def test_a_weight_file_without_an_lfs_digest_is_refused(hub, s3, moto_url, tmp_path, capsys):
    hub.repos["acme/tiny-llama"].no_lfs_digest.add("model.safetensors")
    code, out = _stage(moto_url, s3, tmp_path, capsys=capsys)
    assert code == 1 and "lists no LFS sha256 for model.safetensors" in out.err
    assert _keys(s3) == {}


def test_an_interrupted_upload_is_not_marked_complete_and_resumes(hub, s3, moto_url, tmp_path):
    import boto3
    faulty = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")

    def drop_second_part(params, **_):     # the link drops in the middle of the multipart weight upload
        if "partNumber=2" in params["url"]:
            raise ConnectionResetError("connection reset by peer")

    faulty.meta.events.register("before-call.s3.UploadPart", drop_second_part)
    args = dict(kms_key_id=KMS_KEY, workdir=tmp_path / "work", config_dir=tmp_path / "project", endpoint_url=moto_url,
                region="us-east-1", multipart_threshold=5 * 2 ** 20, multipart_chunksize=5 * 2 ** 20, progress=False)
    with pytest.raises(staging.StageError, match="the manifest is not written .* run the same command again"):
        staging.stage_hub("acme/tiny-llama", COMMIT, f"s3://{s3.bucket}", client=faulty, **args)
    prefix = f"models/tiny-llama/{COMMIT}"
    keys = _keys(s3)
    assert f"{prefix}/SHA256SUMS" not in keys and f"{prefix}/model.safetensors" not in keys
    assert f"{prefix}/config.json" in keys               # what went up before the drop stays, with its digest
    assert s3.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []) == []   # the partial upload was aborted
    result = staging.stage_hub("acme/tiny-llama", COMMIT, f"s3://{s3.bucket}", **args)
    assert "config.json" in result.report.skipped and result.report.uploaded == ["model.safetensors", "tokenizer.json"]
    assert s3.get_object(Bucket=s3.bucket, Key=f"{prefix}/model.safetensors")["Body"].read() == WEIGHTS
    assert f"{prefix}/SHA256SUMS" in _keys(s3)


def test_a_different_manifest_already_in_the_store_is_never_overwritten(hub, s3, moto_url, tmp_path, capsys):
    s3.put_object(Bucket=s3.bucket, Key=f"models/tiny-llama/{COMMIT}/SHA256SUMS", Body=b"0" * 64 + b"  x\n")
    code, out = _stage(moto_url, s3, tmp_path, capsys=capsys)
    assert code == 1 and "already holds a different manifest" in out.err


def test_remote_code_from_another_repository_is_staged_at_a_pinned_commit(hub, s3, moto_url, tmp_path, capsys):
    code, out = _stage(moto_url, s3, tmp_path, capsys=capsys, model="acme/tiny-remote")
    assert code == 1 and "--code-revision acme/tiny-code=<40-hex commit>" in out.err
    code, out = _stage(moto_url, s3, tmp_path, "--code-revision", "acme/tiny-code=main", capsys=capsys,
                       model="acme/tiny-remote")
    assert code == 1 and "branch or tag name" in out.err
    code, out = _stage(moto_url, s3, tmp_path, "--code-revision", f"acme/tiny-code={CODE_COMMIT}", capsys=capsys,
                       model="acme/tiny-remote")
    assert code == 0, out.err
    prefix = f"models/tiny-remote/{COMMIT}"
    manifest = s3.get_object(Bucket=s3.bucket, Key=f"{prefix}/SHA256SUMS")["Body"].read().decode()
    listed = {line.split("  ")[1] for line in manifest.splitlines()}
    # the other repository's module and what it imports relatively, next to config.json; its README is not code
    assert {"configuration_tiny.py", "modeling_tiny.py", "layers.py", "llm-platform-remote-code.json"} <= listed
    assert "README.md" not in listed
    config = json.loads(s3.get_object(Bucket=s3.bucket, Key=f"{prefix}/config.json")["Body"].read())
    assert config["auto_map"] == {"AutoConfig": "configuration_tiny.TinyConfig", "AutoModel": "modeling_tiny.TinyModel"}
    record = json.loads(s3.get_object(Bucket=s3.bucket, Key=f"{prefix}/llm-platform-remote-code.json")["Body"].read())
    assert record["sources"] == [{"repo": "acme/tiny-code", "revision": CODE_COMMIT}]
    assert record["original_auto_map"]["AutoModel"] == "acme/tiny-code--modeling_tiny.TinyModel"
    assert record["files"]["layers.py"] == hashlib.sha256(b"x = 1\n").hexdigest()
    code, out = _stage(moto_url, s3, tmp_path, "--code-revision", f"acme/tiny-code={CODE_COMMIT}", capsys=capsys,
                       model="acme/tiny-remote")     # again, in the same work directory: same manifest
    assert code == 0 and "already staged" in out.err, out.err
    assert "trust_remote_code" in out.out


def test_ollama_model_is_staged_as_its_models_directory_pinned_by_manifest_digest(hub, s3, moto_url, tmp_path, capsys):
    gguf = b"GGUF" + os.urandom(300_000)
    digest = hub.add_ollama("library/llama3.1:8b", gguf)
    base = ["stage", "--ollama", "llama3.1:8b", "--store", f"s3://{s3.bucket}", "--name", "llama-8b",
            "--hf-model", "meta-llama/Llama-3.1-8B-Instruct", "--endpoint-url", moto_url, "--region", "us-east-1",
            "--workdir", str(tmp_path / "work"), "--no-progress"]
    assert main([*base, "--revision", "8b"]) == 1
    assert f"--revision {digest}" in capsys.readouterr().err          # the tag is refused, the digest offered
    assert main([*base, "--revision", "sha256:" + "1" * 64]) == 1
    assert "not the pinned" in capsys.readouterr().err
    assert main([*base, "--revision", digest]) == 0
    out = capsys.readouterr()
    prefix = f"models/llama-8b/{digest}"
    keys = set(_keys(s3))
    assert f"{prefix}/manifests/registry.ollama.ai/library/llama-8b/latest" in keys
    assert f"{prefix}/blobs/sha256-{hashlib.sha256(gguf).hexdigest()}" in keys and f"{prefix}/SHA256SUMS" in keys
    entry, plan = _plan(out.out, tmp_path)
    assert (entry["runtime"], entry["precision"], plan.revision) == ("ollama", "q4_k_m", digest)


def test_ollama_blob_that_differs_from_its_digest_is_refused(hub, s3, moto_url, tmp_path, capsys):
    digest = hub.add_ollama("library/tiny:1b", b"GGUF" + os.urandom(1000))
    store = hub.ollama["library/tiny"]
    layer = next(k for k in store if k.startswith("blobs/") and store[k].startswith(b"GGUF"))
    store[layer] = b"GGUF-tampered"
    assert main(["stage", "--ollama", "tiny:1b", "--revision", digest, "--store", f"s3://{s3.bucket}",
                 "--endpoint-url", moto_url, "--workdir", str(tmp_path / "w"), "--no-progress"]) == 1
    assert "does not match its digest" in capsys.readouterr().err and _keys(s3) == {}


# --- model inspect ------------------------------------------------------------------------------

def test_model_inspect_reports_what_the_planner_would_choose(tmp_path, capsys):
    from tests.test_hf_config import DATA
    path = DATA / "meta-llama__Llama-3.1-8B-Instruct.json"
    assert main(["model", "inspect", str(path), "--context", "16384", "--concurrency", "4", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["parameters"] == 8030261248 and doc["kv_bytes_per_token"] == {"auto": 131072, "fp8": 65536}
    bf16 = next(r for r in doc["precisions"] if r["precision"] == "bf16")
    raw = copy.deepcopy(MINIMAL)
    raw["llm-platform:models"] = [{"name": "l", "model": "x/y", "architecture": json.loads(path.read_text()),
                                   "max_model_len": 16384, "concurrency": 4, "kv_cache_dtype": "auto"}]
    (plan,) = plan_stack(parse(raw))
    assert (bf16["instance_type"], bf16["tensor_parallel"]) == (plan.instance_type, plan.tensor_parallel_size)
    assert bf16["weights_gib"] == pytest.approx(plan.memory.weights_gib, abs=0.01)
    # the directory form, as a console script
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(path.read_text())
    proc = subprocess.run([sys.executable, "-m", "llm_platform", "model", "inspect", str(tmp_path / "m")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "8,030,261,248" in proc.stdout and "cheapest instance" in proc.stdout


def test_model_inspect_weighs_a_pre_quantised_checkpoint_as_the_planner_does(capsys):
    from tests.test_hf_config import DATA
    path = DATA / "deepseek-ai__DeepSeek-V3.json"
    assert main(["model", "inspect", str(path), "--context", "8192", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    vllm_rows = [r for r in doc["precisions"] if r["runtime"] == "vllm"]
    assert [r["precision"] for r in vllm_rows] == ["fp8"] and doc["quantization"] == "fp8"
    raw = copy.deepcopy(MINIMAL)
    raw["llm-platform:models"] = [{"name": "ds", "model": "deepseek-ai/DeepSeek-V3", "max_model_len": 8192,
                                   "kv_cache_dtype": "auto",      # inspect's rows are at the 16-bit KV cache
                                   "architecture": json.loads(path.read_text())}]
    (plan,) = plan_stack(parse(raw))
    assert vllm_rows[0]["weights_gib"] == pytest.approx(plan.memory.weights_gib, abs=0.01)
    assert vllm_rows[0]["instance_type"] == plan.instance_type


def test_model_inspect_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mamba", "_name_or_path": "state-spaces/m"}))
    assert main(["model", "inspect", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'mamba' (state-spaces/m) is not a family" in err
    assert main(["model", "inspect", str(tmp_path / "none")]) == 1
    assert "not a model of the registry" in capsys.readouterr().err
    assert main(["model", "inspect", "meta-llama/Llama-3.1-8B-Instruct", "--context", "200000"]) == 1
    assert "context window is 131072 tokens" in capsys.readouterr().err


# --- helpers ------------------------------------------------------------------------------------

def _boot_fetch(s3, tmp_path, plan, prefix: str, manifest_sha256: str):
    """Run the instance's rendered fetch-and-verify script against a copy of the store."""
    from llm_platform.serving.runtime import ImageRef
    from llm_platform.serving.userdata import BootConfig, decode_user_data, render_user_data
    from tests.test_boot import AWS_STUB
    mirror = tmp_path / "s3" / s3.bucket
    for obj in s3.list_objects_v2(Bucket=s3.bucket)["Contents"]:
        dest = mirror / obj["Key"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(s3.get_object(Bucket=s3.bucket, Key=obj["Key"])["Body"].read())
    image = ImageRef(pinned="r/x@sha256:" + "0" * 64, warm=None)
    boot = BootConfig(plan=plan, region="us-east-1", registry="123456789012.dkr.ecr.us-east-1.amazonaws.com",
                      runtime_image=image, proxy_image=image, model_bucket=s3.bucket, model_prefix=prefix,
                      manifest="SHA256SUMS", manifest_sha256=manifest_sha256)
    rendered = render_user_data(boot)
    doc = yaml.safe_load(rendered if rendered.startswith("#cloud-config") else decode_user_data(rendered))
    script = next(f["content"] for f in doc["write_files"] if f["path"] == "/usr/local/sbin/llm-fetch-model")
    env_file = next(f["content"] for f in doc["write_files"] if f["path"] == "/etc/llm/deployment.env")
    host = tmp_path / "host"
    (host / "etc").mkdir(parents=True)
    (host / "etc" / "deployment.env").write_text(env_file)
    # the fetch unit hands the download to the one verification script, written beside it as on the instance
    verify = host / "llm-verify-model"
    verify.write_text(next(f["content"] for f in doc["write_files"] if f["path"] == "/usr/local/sbin/llm-verify-model"))
    verify.chmod(0o755)
    script = script.replace("/etc/llm/deployment.env", str(host / "etc" / "deployment.env"))
    script = script.replace("/opt/llm", str(host / "opt")).replace("/usr/local/sbin/llm-verify-model", str(verify))
    (host / "fetch.sh").write_text(script)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "aws").write_text(AWS_STUB)
    (bindir / "aws").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_S3": str(tmp_path / "s3")}
    proc = subprocess.run(["bash", str(host / "fetch.sh")], capture_output=True, text=True, env=env, timeout=60)
    return proc, host / "opt" / "model"


def test_a_registry_model_snippet_needs_only_the_approval_to_plan_in_prod(hub, s3, moto_url, tmp_path, capsys):
    from tests.test_hf_config import DATA
    real = json.loads((DATA / "meta-llama__Llama-3.1-8B-Instruct.json").read_text())
    files = {**_files(real), "original/consolidated.00.pth": b"meta-format duplicate"}
    lfs = {"model.safetensors", "original/consolidated.00.pth"}
    hub.repos["meta-llama/Llama-3.1-8B-Instruct"] = Repo(COMMIT, files, lfs)
    code, out = _stage(moto_url, s3, tmp_path, "--name", "llama-8b", "--exclude", "original/*", capsys=capsys,
                       model="meta-llama/Llama-3.1-8B-Instruct")
    assert code == 0, out.err
    assert not any("original/" in k for k in _keys(s3))
    entry = yaml.safe_load(out.out)["llm-platform:models"][0]
    assert "architecture_file" not in entry and not (tmp_path / "project" / "models").exists()
    entry["provenance"].update(approved_by="security@example.com", review_status="approved")
    raw = copy.deepcopy(MINIMAL)
    raw["llm-platform:environment"] = "prod"
    raw["llm-platform:network"]["availability_zones"] = 2
    raw["llm-platform:monitoring"] = {"alarm_email": "oncall@example.com"}
    raw["llm-platform:models"] = [dict(entry, replicas=2)]
    (plan,) = plan_stack(parse(raw))
    assert plan.revision == COMMIT and plan.parameters == 8030261248


def test_a_store_that_is_not_s3_is_refused(hub, tmp_path, capsys):
    assert main(["stage", "--model", "acme/tiny-llama", "--revision", COMMIT, "--store", "/mnt/models"]) == 1
    assert "is not an S3 location" in capsys.readouterr().err and hub.requests == []


def test_a_gated_model_without_a_token_says_how_to_get_access(hub, s3, moto_url, tmp_path, capsys, monkeypatch):
    hub.repos["acme/tiny-llama"].gated = True
    monkeypatch.delenv("HF_TOKEN")
    code, out = _stage(moto_url, s3, tmp_path, capsys=capsys)
    assert code == 1 and "acme/tiny-llama is gated: accept its license on the Hub and set HF_TOKEN" in out.err
    assert _keys(s3) == {}
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert _stage(moto_url, s3, tmp_path, capsys=capsys)[0] == 0


def test_a_work_directory_with_other_files_is_never_used(hub, s3, moto_url, tmp_path, capsys):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "thesis.tex").write_text("years of work")
    code, out = _stage(moto_url, s3, tmp_path, capsys=capsys)
    assert code == 1 and "is not empty and was not made by `llm-platform stage`" in out.err
    assert (tmp_path / "work" / "thesis.tex").read_text() == "years of work"


def test_a_stale_object_of_the_right_name_is_replaced_not_trusted(hub, s3, moto_url, tmp_path, capsys):
    key = f"models/tiny-llama/{COMMIT}/tokenizer.json"
    s3.put_object(Bucket=s3.bucket, Key=key, Body=b'{"version": "0.9", "model": {"type": "BPE"}}',
                  ChecksumAlgorithm="SHA256")       # same size, other bytes
    code, out = _stage(moto_url, s3, tmp_path, capsys=capsys)
    assert code == 0, out.err
    assert s3.get_object(Bucket=s3.bucket, Key=key)["Body"].read() == _files(TINY_CONFIG)["tokenizer.json"]
    assert "uploaded 4 files, 0 already in the store" in out.err


def test_staging_never_reads_objects_as_the_store_policy_forbids_outside_the_vpc(hub, s3, moto_url, tmp_path):
    """The model store denies s3:GetObject except through the VPC endpoint (components/model_store.py); the
    staging machine is outside: resuming and completion checks use GetObjectAttributes and listings only."""
    import boto3
    from botocore.exceptions import ClientError
    outside = boto3.client("s3", endpoint_url=moto_url, region_name="us-east-1")

    def denied(model, **_):
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "explicit deny in a resource-based policy"}},
                          model.name)

    for op in ("HeadObject", "GetObject"):
        outside.meta.events.register(f"before-call.s3.{op}", denied)
    args = dict(workdir=tmp_path / "work", config_dir=tmp_path / "project", progress=False, client=outside)
    first = staging.stage_hub("acme/tiny-llama", COMMIT, f"s3://{s3.bucket}", **args)
    again = staging.stage_hub("acme/tiny-llama", COMMIT, f"s3://{s3.bucket}", **args)
    assert len(first.report.uploaded) == 4 and again.report.already_complete

"""The boot paths that skip the cold start, run for real against stubbed AWS CLI, IMDS and mount: a warm-pool
start reuses weights only when this instance verified them against the plan's digest; a model snapshot is used
only when EC2 says the volume is that snapshot and its manifest hashes to the pinned digest; the lifecycle
helper tells warm-pool preparation from serving and completes the launch hook."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

import pytest
import yaml

from llm_platform.serving.runtime import image_ref
from llm_platform.serving.userdata import BootConfig, render_user_data
from llm_platform.settings import parse, read_stack_file
from llm_platform.sizing.planner import plan_stack
from tests.conftest import ROOT
from tests.test_boot import AWS_STUB

SNAP = "snap-0123456789abcdef0"
VOL = "vol-0aaaabbbbccccdddd"
FILES = {"config.json": b'{"hidden_size": 4096}', "model.safetensors": os.urandom(2048)}
REG = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


@pytest.fixture(scope="module")
def scripts():
    plan = next(p for p in plan_stack(parse(read_stack_file(ROOT / "Pulumi.prod.yaml"))) if p.name == "llama-8b")
    boot = BootConfig(plan=plan, region="us-east-1", registry=REG, runtime_image=image_ref("vllm", REG),
                      proxy_image=image_ref("proxy", REG), model_bucket="bucket", model_prefix="models/m/rev",
                      manifest="SHA256SUMS", manifest_sha256="0" * 64, lifecycle_hook="llm-launch",
                      model_snapshot_id=SNAP)
    doc = yaml.safe_load(render_user_data(boot))
    return {f["path"]: f["content"] for f in doc["write_files"]}


def _manifest(files: dict) -> str:
    return "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(files.items()))


STUBS = {
    # s3 cp/sync from $FAKE_S3, ec2 describe-volumes prints $FAKE_VOLUME, autoscaling calls are logged
    "aws": AWS_STUB.replace("set -euo pipefail\n", """set -euo pipefail
echo "aws $*" >> "$STUB_LOG"
if [ "$1" = ec2 ]; then echo "$FAKE_VOLUME"; exit 0; fi
if [ "$1" = autoscaling ]; then exit 0; fi
""", 1),
    # IMDS: token, instance id, the target lifecycle state, the group name tag
    "curl": """#!/bin/bash
url=""; for a in "$@"; do case "$a" in http*) url="$a";; esac; done
case "$url" in
  */api/token) echo token;;
  */instance-id) echo i-0123;;
  */autoscaling/target-lifecycle-state) echo "$FAKE_STATE";;
  */tags/instance/aws:autoscaling:groupName) echo llm-prod-llama-8b-asg;;
  *) exit 22;;
esac
""",
    "lsblk": """#!/bin/bash
echo "nvme0n1 vol0root"; echo "nvme1n1 ${FAKE_SERIAL}"
""",
    # mount: the model volume is the fake snapshot directory; --bind copies it
    "mount": """#!/bin/bash
echo "mount $*" >> "$STUB_LOG"
target="${*: -1}"; mkdir -p "$target"
if [ "$1" = --bind ]; then cp -r "${@: -2:1}"/. "$target"/; else cp -r "$FAKE_SNAPSHOT"/. "$target"/; fi
""",
    "umount": "#!/bin/bash\nexit 0\n",
}


def _host(tmp_path, scripts, digest: str, volume: str = f"{VOL}\t{SNAP}", serial: str = VOL.replace("-", "")):
    root = tmp_path / "host"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "deployment.env").write_text(
        f"AWS_REGION=us-east-1\nLLM_NAME=m\nMODEL_BUCKET=bucket\nMODEL_PREFIX=models/m/rev\nMANIFEST=SHA256SUMS\n"
        f"MANIFEST_SHA256={digest}\nMODEL_SNAPSHOT_ID={SNAP}\nMODEL_SNAPSHOT_DEVICE=/dev/sdf\n"
        f"LIFECYCLE_HOOK=llm-launch\nRUNTIME_HEALTH_URL=http://127.0.0.1:1/health\n")
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for name, text in STUBS.items():
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_S3": str(tmp_path / "s3"),
           "FAKE_VOLUME": volume, "FAKE_SERIAL": serial, "FAKE_SNAPSHOT": str(tmp_path / "snapshot"),
           "STUB_LOG": str(tmp_path / "calls.log"), "FAKE_STATE": "InService"}
    return root, env


def _run(root, env, scripts, path, *args):
    text = scripts[path].replace("/etc/llm/deployment.env", str(root / "etc" / "deployment.env"))
    text = text.replace("/opt/llm", str(root / "opt"))
    # the one verification script the fetch unit calls (serving/verify.py), beside it as on the instance
    verify = root / "llm-verify-model"
    verify.write_text(scripts["/usr/local/sbin/llm-verify-model"])
    verify.chmod(0o755)
    text = text.replace("/usr/local/sbin/llm-verify-model", str(verify))
    script = root / os.path.basename(path)
    script.write_text(text)
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=env, timeout=60)


def _stage_s3(tmp_path, files=FILES) -> str:
    bucket = tmp_path / "s3" / "bucket" / "models" / "m" / "rev"
    bucket.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (bucket / name).write_bytes(data)
    (bucket / "SHA256SUMS").write_text(_manifest(files))
    return hashlib.sha256(_manifest(files).encode()).hexdigest()


FETCH = "/usr/local/sbin/llm-fetch-model"
LIFECYCLE = "/usr/local/sbin/llm-lifecycle"


def test_a_warm_pool_restart_reuses_the_weights_this_instance_verified(tmp_path, scripts):
    digest = _stage_s3(tmp_path)
    root, env = _host(tmp_path, scripts, digest, volume="None\tNone")
    first = _run(root, env, scripts, FETCH)
    assert first.returncode == 0, first.stderr
    assert (root / "opt" / "verified").read_text().split() == [digest, "models/m/rev"]
    shutil.rmtree(tmp_path / "s3")                      # nothing to download: only the warm path can succeed
    second = _run(root, env, scripts, FETCH)
    assert second.returncode == 0 and "warm start" in second.stdout, second.stderr
    assert (root / "opt" / "model" / "config.json").read_bytes() == FILES["config.json"]


def test_a_warm_start_for_another_digest_downloads_and_verifies_again(tmp_path, scripts):
    digest = _stage_s3(tmp_path)
    root, env = _host(tmp_path, scripts, digest, volume="None\tNone")
    assert _run(root, env, scripts, FETCH).returncode == 0
    new = {**FILES, "config.json": b'{"hidden_size": 8192}'}
    new_digest = _stage_s3(tmp_path, new)
    root2, env2 = _host(tmp_path, scripts, new_digest, volume="None\tNone")
    proc = _run(root2, env2, scripts, FETCH)
    assert proc.returncode == 0 and "warm start" not in proc.stdout
    assert (root / "opt" / "model" / "config.json").read_bytes() == new["config.json"]


def test_a_changed_manifest_on_disk_voids_the_warm_start(tmp_path, scripts):
    digest = _stage_s3(tmp_path)
    root, env = _host(tmp_path, scripts, digest, volume="None\tNone")
    assert _run(root, env, scripts, FETCH).returncode == 0
    (root / "opt" / "SHA256SUMS").write_text("0" * 64 + "  config.json\n")
    shutil.rmtree(tmp_path / "s3")
    proc = _run(root, env, scripts, FETCH)
    assert proc.returncode != 0 and "warm start" not in proc.stdout


def _snapshot(tmp_path, files=FILES) -> str:
    snap = tmp_path / "snapshot"
    snap.mkdir(exist_ok=True)
    for name, data in files.items():
        (snap / name).write_bytes(data)
    (snap / "SHA256SUMS").write_text(_manifest(files))
    return hashlib.sha256(_manifest(files).encode()).hexdigest()


def test_the_pinned_snapshot_is_mounted_without_download(tmp_path, scripts):
    digest = _snapshot(tmp_path)
    root, env = _host(tmp_path, scripts, digest)
    proc = _run(root, env, scripts, FETCH)                 # no S3 at all: a download would fail
    assert proc.returncode == 0 and f"snapshot start: {root / 'opt' / 'model'} is {SNAP}" in proc.stdout, proc.stderr
    assert (root / "opt" / "model" / "model.safetensors").read_bytes() == FILES["model.safetensors"]
    calls = (tmp_path / "calls.log").read_text()
    assert "Name=attachment.device,Values=/dev/sdf" in calls and "mount -o ro,nodev,nosuid /dev/nvme1n1" in calls


def test_a_volume_from_another_snapshot_is_not_trusted(tmp_path, scripts):
    digest = _snapshot(tmp_path)
    _stage_s3(tmp_path)
    root, env = _host(tmp_path, scripts, digest, volume=f"{VOL}\tsnap-0ffffffffffffffff")
    proc = _run(root, env, scripts, FETCH)
    assert "not " + SNAP in proc.stderr and "snapshot start" not in proc.stdout
    assert "mount -o" not in (tmp_path / "calls.log").read_text()


def test_a_snapshot_without_the_pinned_manifest_falls_back_to_a_verified_download(tmp_path, scripts):
    _snapshot(tmp_path, {**FILES, "extra.py": b"x"})        # a different manifest
    digest = _stage_s3(tmp_path)
    root, env = _host(tmp_path, scripts, digest)
    proc = _run(root, env, scripts, FETCH)
    assert proc.returncode == 0, proc.stderr
    assert "does not carry the pinned manifest" in proc.stderr and "snapshot start" not in proc.stdout
    assert not (root / "opt" / "model" / "extra.py").exists()


@pytest.mark.parametrize("state, warming, serving", [("Warmed:Stopped", 0, 1), ("InService", 1, 0)])
def test_lifecycle_state_gates_preparation_and_serving(tmp_path, scripts, state, warming, serving):
    root, env = _host(tmp_path, scripts, "0" * 64)
    env["FAKE_STATE"] = state
    assert _run(root, env, scripts, LIFECYCLE, "warming").returncode == warming
    assert _run(root, env, scripts, LIFECYCLE, "serving").returncode == serving


def test_lifecycle_complete_continues_the_launch_hook_of_its_group(tmp_path, scripts):
    root, env = _host(tmp_path, scripts, "0" * 64)
    proc = _run(root, env, scripts, LIFECYCLE, "complete")
    assert proc.returncode == 0, proc.stderr
    call = (tmp_path / "calls.log").read_text()
    for part in ("autoscaling complete-lifecycle-action", "--lifecycle-action-result CONTINUE",
                 "--lifecycle-hook-name llm-launch", "--instance-id i-0123",
                 "--auto-scaling-group-name llm-prod-llama-8b-asg"):
        assert part in call


def test_serving_units_are_skipped_not_failed_while_warming(scripts):
    for unit in ("llm-runtime", "llm-proxy"):
        text = scripts[f"/etc/systemd/system/{unit}.service"]
        assert "ExecCondition=/usr/local/sbin/llm-lifecycle serving" in text
    warm = scripts["/etc/systemd/system/llm-warm.service"]
    assert "ExecCondition=/usr/local/sbin/llm-lifecycle warming" in warm
    assert warm.index("docker pull") < warm.index("ExecStart=/usr/local/sbin/llm-lifecycle complete")
    assert "Requires=docker.service llm-model.service" in warm


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (CI installs it)")
def test_capacity_boot_scripts_pass_shellcheck(scripts, tmp_path):
    for path in (FETCH, LIFECYCLE):
        f = tmp_path / os.path.basename(path)
        f.write_text(scripts[path])
        proc = subprocess.run(["shellcheck", "-S", "warning", str(f)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout

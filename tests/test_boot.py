"""What runs on an instance, run for real on this machine: the boot scripts against a stubbed
AWS CLI, and the rendered nginx proxy in front of a fake runtime on loopback. CI installs nginx
and shellcheck (.ci/run); elsewhere these tests skip when the tools are missing."""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from llm_platform.offline.mocks import run_program
from llm_platform.serving.proxy import METRICS_PORT, TARGET_PORT, key_map_entry, render_nginx_conf
from llm_platform.serving.runtime import PORTS
from llm_platform.serving.userdata import client_hash, decode_user_data
from llm_platform.settings import parse, read_stack_file
from llm_platform.sizing.planner import plan_stack
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def prod_scripts(shipped):
    rec = shipped("prod")
    doc = yaml.safe_load(decode_user_data(rec.named("llm-prod-llama-8b-fleet-lt").inputs["userData"]))
    return {f["path"]: f["content"] for f in doc["write_files"]}


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (CI installs it)")
def test_boot_scripts_pass_shellcheck(prod_scripts, tmp_path):
    for path, text in prod_scripts.items():
        if path.startswith("/usr/local/sbin/"):
            script = tmp_path / Path(path).name
            script.write_text(text)
            proc = subprocess.run(["shellcheck", "-S", "warning", str(script)], capture_output=True, text=True)
            assert proc.returncode == 0, proc.stdout


# --- the model verification, fail-closed: one script, three renderings -----------------------------

AWS_STUB = """#!/bin/bash
# stands in for the AWS CLI: s3 paths map to $FAKE_S3 (symbolic links copied as links)
set -euo pipefail
args=("$@"); src=""; dst=""; excl=""
for ((i=0; i<${#args[@]}; i++)); do
  case "${args[$i]}" in
    s3://*) src="$FAKE_S3/${args[$i]#s3://}";;
    --exclude) excl="${args[$((i+1))]}"; i=$((i+1));;
    --region) i=$((i+1));;
    --*) ;;
    cp|sync|s3) ;;
    *) dst="${args[$i]}";;
  esac
done
if [ "$2" = "cp" ]; then cp "$src" "$dst"; exit 0; fi
mkdir -p "$dst"
(cd "$src" && find . ! -type d ! -name "$excl" -exec cp -P --parents {} "$dst" \\;)
"""
SERVER_STUB = "#!/bin/sh\necho SERVING \"$@\"\n"

FILES = {"config.json": b'{"hidden_size": 4096}', "model-00001-of-00001.safetensors": os.urandom(4096),
         "tokenizer/tokenizer.json": b"{}"}


def _manifest(files: dict[str, bytes]) -> str:
    return "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(files.items()))


# tamper case -> (what is staged, what the verifier must say); None: the weights are good
CASES = {
    "good": None,
    "tampered": "FAILED",
    "missing": "missing: tokenizer/tokenizer.json",
    "unlisted": "files not in the manifest: modeling_evil.py",
    "symlink": "symbolic links in the model directory",
    "dotdot": "leaves or bends the model directory",
    "absolute": "not a relative path",
    "not-pinned": "differs from the pinned",
    "twice": "lists a file twice",
    "malformed": "malformed manifest line",
}


def _stage(src: Path, case: str) -> tuple[str, str]:
    """Stage a model for `case` in src/; returns (manifest text, pinned digest)."""
    src.mkdir(parents=True, exist_ok=True)
    files = dict(FILES)
    manifest = _manifest(files)
    if case == "missing":
        del files["tokenizer/tokenizer.json"]
    elif case == "unlisted":
        files["modeling_evil.py"] = b"import os; os.system('curl ...')"
    elif case == "dotdot":
        manifest += f"{hashlib.sha256(b'x').hexdigest()}  tokenizer/../../etc/passwd\n"
    elif case == "absolute":
        manifest += f"{hashlib.sha256(b'x').hexdigest()}  /etc/passwd\n"
    elif case == "twice":
        manifest += manifest.splitlines(keepends=True)[0]
    elif case == "malformed":
        manifest += "not-a-digest config.json\n"
    for name, data in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(b"trojan" if case == "tampered" and name.endswith(".safetensors") else data)
    if case == "symlink":
        (src / "config.json").unlink()
        outside = src.parent / "outside.json"
        outside.write_bytes(FILES["config.json"])
        (src / "config.json").symlink_to(outside)          # same content, but pointing out of the directory
    pinned = hashlib.sha256(manifest.encode()).hexdigest()
    return manifest, "0" * 64 if case == "not-pinned" else pinned


def _tools(tmp_path: Path) -> dict:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for name, text in (("aws", AWS_STUB), ("vllm", SERVER_STUB), ("ollama", SERVER_STUB)):
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_S3": str(tmp_path / "s3")}


def _s3_stage(tmp_path: Path, case: str) -> str:
    prefix = tmp_path / "s3" / "bucket" / "models" / "m" / "rev"
    manifest, pinned = _stage(prefix, case)
    (prefix / "SHA256SUMS").write_text(manifest)
    return pinned


def _run_ec2(scripts: dict, tmp_path: Path, case: str):
    """The instance's llm-fetch-model unit script (bash), calling /usr/local/sbin/llm-verify-model."""
    pinned = _s3_stage(tmp_path, case)
    root = tmp_path / "host"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "deployment.env").write_text(
        f"AWS_REGION=us-east-1\nLLM_NAME=m\nMODEL_BUCKET=bucket\nMODEL_PREFIX=models/m/rev\n"
        f"MANIFEST=SHA256SUMS\nMANIFEST_SHA256={pinned}\n")
    verify = root / "llm-verify-model"
    verify.write_text(scripts["/usr/local/sbin/llm-verify-model"])
    verify.chmod(0o755)
    script = (scripts["/usr/local/sbin/llm-fetch-model"]
              .replace("/etc/llm/deployment.env", str(root / "etc" / "deployment.env"))
              .replace("/opt/llm", str(root / "opt")).replace("/usr/local/sbin/llm-verify-model", str(verify)))
    (root / "fetch.sh").write_text(script)
    proc = subprocess.run(["bash", str(root / "fetch.sh")], capture_output=True, text=True, env=_tools(tmp_path),
                          timeout=60)
    return proc, root / "opt" / "model"


def _run_eks(script: str, tmp_path: Path, case: str):
    """The init container's script (sh), as the pod runs it: env from the pod spec, the model to /model, or with
    the node cache (components/node_cache.py) to /model-cache/<manifest digest>, published only once verified."""
    pinned = _s3_stage(tmp_path, case)
    dest, manifest, cache = tmp_path / "pod" / "model", tmp_path / "pod" / "SHA256SUMS", tmp_path / "pod" / "cache"
    cache.mkdir(parents=True)
    if "root=/model-cache" in script:
        dest = cache / pinned
    script = (script.replace("dest=/model", f"dest={dest}").replace("root=/model-cache", f"root={cache}")
              .replace("/tmp/SHA256SUMS", str(manifest)))
    env = {**_tools(tmp_path), "MODEL_BUCKET": "bucket", "MODEL_PREFIX": "models/m/rev", "MANIFEST": "SHA256SUMS",
           "MANIFEST_SHA256": pinned, "LLM_NAME": "m"}
    proc = subprocess.run(["sh", "-ec", script], capture_output=True, text=True, env=env, timeout=60)
    return proc, dest


def _run_docker(script: str, configured_digest: str, tmp_path: Path, case: str):
    """The runtime container's entrypoint (sh -ec): the volume at /model holds the weights and the manifest."""
    model = tmp_path / "volume"
    manifest, pinned = _stage(model, case)
    (model / "SHA256SUMS").write_text(manifest)
    script = script.replace("/model", str(model)).replace(configured_digest, pinned)
    proc = subprocess.run(["sh", "-ec", script], capture_output=True, text=True, env=_tools(tmp_path), timeout=60)
    return proc, model


LOCAL_DIGEST = "ab" * 32


@pytest.fixture(scope="module")
def eks_fetch(shipped):
    rec = shipped("eks")
    deployment = next(r for r in rec.of_type("kubernetes:apps/v1:Deployment"))
    (init,) = deployment.inputs["spec"]["template"]["spec"]["initContainers"]
    assert init["command"][:2] == ["/bin/sh", "-ec"]
    return init["command"][2]


@pytest.fixture(scope="module")
def docker_entrypoint():
    raw = read_stack_file(ROOT / "Pulumi.local.yaml")
    raw["llm-platform:models"][0]["checksums"] = {"manifest": "SHA256SUMS", "sha256": LOCAL_DIGEST}
    rec = run_program(raw, stack="local", program=ROOT)
    name = raw["llm-platform:models"][0]["name"]
    runtime = rec.named(f"llm-local-{name}-runtime", "docker:index/container:Container").inputs
    assert runtime["entrypoints"] == ["/bin/sh", "-ec"]
    return runtime["command"][0]


def test_the_three_renderings_carry_the_same_verification_script(prod_scripts, eks_fetch, docker_entrypoint):
    from llm_platform.serving.verify import render_verify_function
    body = render_verify_function()
    assert body in prod_scripts["/usr/local/sbin/llm-verify-model"] and body in eks_fetch and body in docker_entrypoint


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("rendering", ["ec2", "eks", "docker"])
def test_verification_fails_closed(rendering, case, prod_scripts, eks_fetch, docker_entrypoint, tmp_path):
    if rendering == "ec2":
        proc, model = _run_ec2(prod_scripts, tmp_path, case)
    elif rendering == "eks":
        proc, model = _run_eks(eks_fetch, tmp_path, case)
    else:
        proc, model = _run_docker(docker_entrypoint, LOCAL_DIGEST, tmp_path, case)
    said = proc.stdout + proc.stderr
    if CASES[case] is None:
        assert proc.returncode == 0, said
        assert (model / "config.json").read_bytes() == FILES["config.json"]
        assert "model verified: 3 files" in proc.stderr
        if rendering == "docker":
            assert "SERVING" in proc.stdout                   # the server starts only after the check
        return
    assert proc.returncode != 0, said
    assert CASES[case] in said, said
    assert "SERVING" not in proc.stdout                       # the server never starts
    if case in ("not-pinned", "dotdot", "absolute", "twice", "malformed") and rendering != "docker":
        assert not model.exists() or not any(model.iterdir())   # nothing downloaded past a bad manifest


VERIFY_TOOLS = ("sh", "sha256sum", "cut", "find", "sed", "grep", "sort", "uniq", "mktemp", "cp", "rm", "tr", "wc")


def _run_standalone(tmp_path: Path, case: str, bindir: Path, shell: str):
    from llm_platform.serving.verify import render_verify_script
    model = tmp_path / "model"
    manifest, pinned = _stage(model, case)
    (tmp_path / "SHA256SUMS").write_text(manifest)
    (tmp_path / "verify.sh").write_text(render_verify_script())
    return subprocess.run([shell, str(tmp_path / "verify.sh"), str(model), str(tmp_path / "SHA256SUMS"), pinned],
                          capture_output=True, text=True, env={"PATH": str(bindir)}, timeout=60)


def test_a_missing_tool_fails_closed_rather_than_finding_nothing(tmp_path):
    """An image without grep (or find, sort...) must not read as "no unlisted files"."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in VERIFY_TOOLS:
        if tool != "grep":
            (bindir / tool).symlink_to(shutil.which(tool))
    proc = _run_standalone(tmp_path, "unlisted", bindir, shutil.which("sh"))
    assert proc.returncode != 0 and "needs grep" in proc.stderr


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox not installed")
@pytest.mark.parametrize("case", CASES)
def test_verification_under_busybox(case, tmp_path):
    """Alpine-like images: busybox ash and applets only."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in VERIFY_TOOLS:
        (bindir / tool).symlink_to(shutil.which("busybox"))
    proc = _run_standalone(tmp_path, case, bindir, str(bindir / "sh"))
    if CASES[case] is None:
        assert proc.returncode == 0 and "model verified: 3 files" in proc.stderr, proc.stderr
    else:
        assert proc.returncode != 0 and CASES[case] in proc.stderr, proc.stderr


def test_verified_model_is_installed_read_only(prod_scripts, tmp_path):
    proc, model = _run_ec2(prod_scripts, tmp_path, "good")
    assert proc.returncode == 0, proc.stderr
    assert (model / "config.json").read_bytes() == FILES["config.json"]
    assert not os.access(model / "config.json", os.W_OK) or os.geteuid() == 0
    assert oct((model / "config.json").stat().st_mode)[-3:] == "444"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (CI installs it)")
def test_verification_script_is_posix_sh_for_shellcheck(tmp_path):
    from llm_platform.serving.verify import render_verify_script
    script = tmp_path / "llm-verify-model"
    script.write_text(render_verify_script())
    proc = subprocess.run(["shellcheck", "-s", "sh", "-S", "style", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


# --- the proxy, for real ------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeRuntime(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def log_message(self, *args):
        pass

    def _reply(self, status, body: bytes, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        FakeRuntime.seen.append(("GET", self.path, self.headers.get("Authorization")))
        if self.path == "/health":
            return self._reply(200, b"")
        if self.path == "/metrics":
            return self._reply(200, b"vllm:num_requests_waiting 0\n", "text/plain")
        return self._reply(200, b'{"reached": "%s"}' % self.path.encode())

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        FakeRuntime.seen.append(("POST", self.path, self.headers.get("Authorization")))
        return self._reply(200, b'{"choices": [{"message": {"content": "hi"}}]}')


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    if shutil.which("nginx") is None:
        pytest.skip("nginx not installed (CI installs it)")
    tmp = tmp_path_factory.mktemp("proxy")
    config = parse(read_stack_file(ROOT / "Pulumi.prod.yaml"))
    plan = next(p for p in plan_stack(config) if p.name == "llama-8b")
    upstream, api, metrics = _free_port(), _free_port(), _free_port()
    conf = render_nginx_conf(plan, max_prompt_bytes=4096, monitoring_cidrs=["127.0.0.1/32"])
    # Debian's nginx (1.22) predates the `http2 on;` directive of the image's nginx (1.30)
    conf = (conf.replace("http2 on;", "").replace(f"127.0.0.1:{PORTS['vllm']}", f"127.0.0.1:{upstream}")
            .replace(f"listen {TARGET_PORT} ssl", f"listen 127.0.0.1:{api} ssl")
            .replace(f"listen {METRICS_PORT} ssl", f"listen 127.0.0.1:{metrics} ssl")
            .replace("/run/llm", str(tmp / "run")).replace("/var/log/llm-proxy", str(tmp / "log"))
            .replace("pid /tmp/nginx.pid;", f"pid {tmp}/nginx.pid;"))
    (tmp / "run" / "tls").mkdir(parents=True)
    (tmp / "log").mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "1", "-subj", "/CN=llama-8b.test", "-keyout", str(tmp / "run/tls/key.pem"),
                    "-out", str(tmp / "run/tls/cert.pem")], check=True, capture_output=True)
    key = "kK0" * 16
    (tmp / "run" / "keys.map").write_text(key_map_entry(key, client_hash("ide-plugins")))
    for p in (tmp, tmp / "run", tmp / "log"):
        p.chmod(0o777)
    (tmp / "nginx.conf").write_text(conf)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", upstream), FakeRuntime)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    nginx = subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log"),
                              "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", api), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield {"api": api, "metrics": metrics, "key": key, "dir": tmp}
    nginx.terminate()
    nginx.wait(timeout=10)
    server.shutdown()


def _call(port, path, key=None, body=None):
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    req = urllib.request.Request(f"https://127.0.0.1:{port}{path}", data=body, method="POST" if body else "GET",
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {key}"} if key else {})})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_api_routes_need_a_known_key(proxy):
    body = json.dumps({"model": "llama-8b", "messages": [{"role": "user", "content": "secret prompt"}]}).encode()
    assert _call(proxy["api"], "/v1/chat/completions", body=body)[0] == 401
    assert _call(proxy["api"], "/v1/chat/completions", key="wrong" * 10, body=body)[0] == 401
    status, reply = _call(proxy["api"], "/v1/chat/completions", key=proxy["key"], body=body)
    assert status == 200 and b"hi" in reply
    assert FakeRuntime.seen[-1] == ("POST", "/v1/chat/completions", None)     # the key never reaches the runtime


def test_health_is_open_and_everything_else_is_closed(proxy):
    assert _call(proxy["api"], "/health")[0] == 200
    for path in ("/metrics", "/v1/load_lora_adapter", "/collective_rpc", "/docs", "/"):
        status, body = _call(proxy["api"], path, key=proxy["key"])
        assert status == 404 and b"reached" not in body, path


def test_bodies_over_the_limit_are_refused(proxy):
    big = json.dumps({"model": "llama-8b", "prompt": "x" * 5000}).encode()
    assert _call(proxy["api"], "/v1/completions", key=proxy["key"], body=big)[0] == 413


def test_metrics_only_on_the_metrics_port_from_monitoring_cidrs(proxy):
    status, body = _call(proxy["metrics"], "/metrics")
    assert status == 200 and b"vllm:num_requests_waiting" in body
    assert _call(proxy["metrics"], "/v1/models", key=proxy["key"])[0] == 404


def test_audit_log_has_a_client_hash_and_never_the_prompt_or_key(proxy):
    body = json.dumps({"model": "llama-8b", "messages": [{"role": "user", "content": "TOP-SECRET-PROMPT"}]}).encode()
    _call(proxy["api"], "/v1/chat/completions", key=proxy["key"], body=body)
    time.sleep(0.2)
    lines = [json.loads(line) for line in (proxy["dir"] / "log" / "audit.log").read_text().splitlines()]
    assert lines and lines[-1]["client"] == client_hash("ide-plugins") and lines[-1]["model"] == "llama-8b"
    text = (proxy["dir"] / "log" / "audit.log").read_text()
    assert "TOP-SECRET-PROMPT" not in text and proxy["key"] not in text


@pytest.mark.parametrize("runtime,allowed,refused", [
    ("vllm", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"],
     ["/metrics", "/v1/load_lora_adapter", "/collective_rpc", "/reset_prefix_cache", "/sleep",
      "/v1/chat/completions/x"]),
    # Ollama: OpenAI-compatible routes only; the native API takes per-request options (num_ctx)
    ("ollama", ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models"],
     ["/api/pull", "/api/push", "/api/create", "/api/delete", "/api/copy", "/api/blobs/sha256:abc",
      "/api/chat", "/api/generate", "/api/embed", "/api/show"]),
    ("tgi", ["/v1/chat/completions", "/generate", "/generate_stream", "/info"], ["/metrics", "/tokenize", "/"]),
])
def test_each_runtime_exposes_only_its_api_routes(runtime, allowed, refused):
    import re

    from llm_platform.serving.proxy import API_ROUTES
    routes = API_ROUTES[runtime].values()
    for path in allowed:
        assert any(re.search(r, path) for r in routes), path
    for path in refused:
        assert not any(re.search(r, path) for r in routes), path

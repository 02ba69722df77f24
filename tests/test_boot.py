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

from llm_platform.serving.proxy import METRICS_PORT, TARGET_PORT, key_map_entry, render_nginx_conf
from llm_platform.serving.runtime import PORTS
from llm_platform.serving.userdata import client_hash, decode_user_data
from llm_platform.settings import parse, read_stack_file
from llm_platform.sizing.planner import plan_stack
from tests.conftest import ROOT
from llm_platform.offline.mocks import run_program


@pytest.fixture(scope="module")
def prod_scripts():
    rec = run_program(read_stack_file(ROOT / "Pulumi.prod.yaml"), stack="prod", program=ROOT)
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


# --- the model fetch, fail-closed ---------------------------------------------------------------

AWS_STUB = """#!/bin/bash
# stands in for the AWS CLI: s3 paths map to $FAKE_S3
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
if [ "$2" = "cp" ]; then cp "$src" "$dst"; else mkdir -p "$dst"; (cd "$src" && find . -type f ! -name "$excl" -exec cp --parents {} "$dst" \\;); fi
"""


def _stage(tmp_path, files: dict[str, bytes], extra: dict[str, bytes] | None = None):
    bucket = tmp_path / "s3" / "bucket" / "models" / "m" / "rev"
    bucket.mkdir(parents=True)
    for name, data in {**files, **(extra or {})}.items():
        (bucket / name).parent.mkdir(parents=True, exist_ok=True)
        (bucket / name).write_bytes(data)
    manifest = "".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in sorted(files.items()))
    (bucket / "SHA256SUMS").write_text(manifest)
    return hashlib.sha256(manifest.encode()).hexdigest()


def _run_fetch(prod_scripts, tmp_path, digest):
    root = tmp_path / "host"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "deployment.env").write_text(
        f"AWS_REGION=us-east-1\nLLM_NAME=m\nMODEL_BUCKET=bucket\nMODEL_PREFIX=models/m/rev\n"
        f"MANIFEST=SHA256SUMS\nMANIFEST_SHA256={digest}\n")
    script = prod_scripts["/usr/local/sbin/llm-fetch-model"]
    script = script.replace("/etc/llm/deployment.env", str(root / "etc" / "deployment.env")).replace("/opt/llm", str(root / "opt"))
    (root / "fetch.sh").write_text(script)
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "aws").write_text(AWS_STUB)
    (bindir / "aws").chmod(0o755)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_S3": str(tmp_path / "s3")}
    proc = subprocess.run(["bash", str(root / "fetch.sh")], capture_output=True, text=True, env=env, timeout=60)
    return proc, root / "opt" / "model"


FILES = {"config.json": b'{"hidden_size": 4096}', "model-00001-of-00001.safetensors": os.urandom(4096),
         "tokenizer/tokenizer.json": b"{}"}


def test_verified_model_is_installed_read_only(prod_scripts, tmp_path):
    proc, model = _run_fetch(prod_scripts, tmp_path, _stage(tmp_path, FILES))
    assert proc.returncode == 0, proc.stderr
    assert (model / "config.json").read_bytes() == FILES["config.json"]
    assert not os.access(model / "config.json", os.W_OK) or os.geteuid() == 0
    assert oct((model / "config.json").stat().st_mode)[-3:] == "444"


def test_a_tampered_weight_file_stops_the_boot(prod_scripts, tmp_path):
    digest = _stage(tmp_path, FILES)
    (tmp_path / "s3/bucket/models/m/rev/model-00001-of-00001.safetensors").write_bytes(b"trojan")
    proc, _ = _run_fetch(prod_scripts, tmp_path, digest)
    assert proc.returncode != 0 and "FAILED" in proc.stdout + proc.stderr


def test_a_manifest_that_is_not_the_pinned_one_stops_the_boot(prod_scripts, tmp_path):
    _stage(tmp_path, FILES)
    proc, model = _run_fetch(prod_scripts, tmp_path, "0" * 64)
    assert proc.returncode != 0 and "differs from the pinned" in proc.stderr
    assert not model.exists() or not any(model.iterdir())       # nothing downloaded past the manifest


def test_a_file_the_manifest_does_not_list_stops_the_boot(prod_scripts, tmp_path):
    digest = _stage(tmp_path, FILES, extra={"modeling_evil.py": b"import os; os.system('curl ...')"})
    proc, _ = _run_fetch(prod_scripts, tmp_path, digest)
    assert proc.returncode != 0 and "files not in the manifest: modeling_evil.py" in proc.stderr


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
     ["/metrics", "/v1/load_lora_adapter", "/collective_rpc", "/reset_prefix_cache", "/sleep", "/v1/chat/completions/x"]),
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

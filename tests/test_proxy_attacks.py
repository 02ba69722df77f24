"""Attacks on the rendered proxy, run for real: nginx on loopback in front of a recording fake runtime,
one proxy per runtime (vLLM, Ollama, TGI). Each attack must be refused before the runtime sees it, and
the audit log must stay free of prompts and keys. Findings of an outside red team, kept as regressions:
key case variants, encoded paths, admin routes, methods, oversize and chunked bodies, CL+TE smuggling,
client headers that must not reach the runtime."""
from __future__ import annotations

import dataclasses
import http.server
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from llm_platform.serving.proxy import METRICS_PORT, TARGET_PORT, key_map_entry, render_nginx_conf
from llm_platform.serving.runtime import PORTS
from llm_platform.serving.userdata import client_hash
from llm_platform.settings import parse, read_stack_file
from llm_platform.sizing.planner import plan_stack
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx not installed (CI installs it)")

KEY = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7dEf0hIj3kLm6n"       # 48 alphanumerics, mixed case like real keys
PROMPT = "TOP-SECRET-PROMPT-7f3a"
MAX_BODY = 4096
ADMIN = {
    "vllm": ["/v1/load_lora_adapter", "/v1/unload_lora_adapter", "/collective_rpc", "/sleep", "/wake_up",
             "/is_sleeping", "/reset_prefix_cache", "/start_profile", "/stop_profile", "/metrics", "/docs",
             "/openapi.json", "/tokenize", "/detokenize", "/version", "/server_info", "/pooling", "/score",
             "/invocations", "/scale_elastic_ep", "/v1/chat/completions/render", "/v1/models/x"],
    "ollama": ["/api/pull", "/api/push", "/api/create", "/api/delete", "/api/copy", "/api/blobs/sha256:00",
               "/api/chat", "/api/generate", "/api/embed", "/api/show", "/api/ps", "/api/tags", "/api/version"],
    "tgi": ["/metrics", "/tokenize", "/docs", "/api-doc/openapi.json", "/health/x", "/invocations"],
}
POST_ROUTE = {"vllm": "/v1/chat/completions", "ollama": "/v1/chat/completions", "tgi": "/generate"}
GET_ROUTE = {"vllm": "/v1/models", "ollama": "/v1/models", "tgi": "/info"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fake_runtime(seen: list):
    class Runtime(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _record(self, body: bytes = b""):
            seen.append({"method": self.command, "path": self.path, "headers": dict(self.headers.items()),
                         "body": body})

        def _reply(self):
            payload = json.dumps({"reached": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self):
            self._record()
            self._reply()

        do_HEAD = do_GET

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            self._record(self.rfile.read(length))
            self._reply()

        do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_POST
    return Runtime


@pytest.fixture(scope="module")
def base_plan():
    config = parse(read_stack_file(ROOT / "Pulumi.prod.yaml"))
    return next(p for p in plan_stack(config) if p.name == "llama-8b")


@pytest.fixture(scope="module", params=["vllm", "ollama", "tgi"])
def proxy(request, base_plan, tmp_path_factory):
    runtime = request.param
    plan = dataclasses.replace(base_plan, runtime=runtime)
    tmp = tmp_path_factory.mktemp(f"attack-{runtime}")
    upstream, api, metrics = _free_port(), _free_port(), _free_port()
    conf = render_nginx_conf(plan, max_prompt_bytes=MAX_BODY, monitoring_cidrs=["127.0.0.1/32"])
    # Debian's nginx (1.22) predates the `http2 on;` directive of the image's nginx (1.30)
    conf = (conf.replace("http2 on;", "").replace(f"127.0.0.1:{PORTS[runtime]};", f"127.0.0.1:{upstream};")
            .replace(f"listen {TARGET_PORT} ssl", f"listen 127.0.0.1:{api} ssl")
            .replace(f"listen {METRICS_PORT} ssl", f"listen 127.0.0.1:{metrics} ssl")
            .replace("/run/llm", str(tmp / "run")).replace("/var/log/llm-proxy", str(tmp / "log"))
            .replace("pid /tmp/nginx.pid;", f"pid {tmp}/nginx.pid;").replace("_temp_path /tmp/", f"_temp_path {tmp}/"))
    (tmp / "run" / "tls").mkdir(parents=True)
    (tmp / "log").mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "1", "-subj", "/CN=attack.test", "-keyout", str(tmp / "run/tls/key.pem"),
                    "-out", str(tmp / "run/tls/cert.pem")], check=True, capture_output=True)
    (tmp / "run" / "keys.map").write_text(key_map_entry(KEY, client_hash("ide-plugins")))
    (tmp / "nginx.conf").write_text(conf)
    seen: list = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", upstream), _fake_runtime(seen))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    nginx = subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log"),
                              "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", api), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        nginx.terminate()
        pytest.fail(f"nginx did not start: {nginx.stderr.read().decode() if nginx.stderr else ''}")
    yield {"runtime": runtime, "api": api, "metrics": metrics, "seen": seen, "dir": tmp}
    nginx.terminate()
    nginx.wait(timeout=10)
    server.shutdown()


# one context for all connections: loading the system CA store per connection costs ~0.1 s
TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
TLS.check_hostname, TLS.verify_mode = False, ssl.CERT_NONE


def raw(port: int, request: bytes) -> tuple[int, bytes]:
    """Send bytes as they are (no client-side normalisation) over TLS; the status and the body."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
            TLS.wrap_socket(sock, server_hostname="attack.test") as tls:
        tls.sendall(request)
        data = b""
        while True:
            try:
                chunk = tls.recv(65536)
            except (TimeoutError, ssl.SSLError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            if b"\r\n\r\n" in data and b"content-length:" in head.lower():
                length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length:")))
                if len(body) >= length:
                    break
    return int(data.split(b" ", 2)[1]), data.partition(b"\r\n\r\n")[2]


def request(method: str, path: str, *, key: str | None = KEY, body: bytes | None = None, headers: dict | None = None,
            chunked: bool = False, auth: str | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: attack.test", "Connection: close"]
    if auth is not None:
        lines.append(f"Authorization: {auth}")
    elif key is not None:
        lines.append(f"Authorization: Bearer {key}")
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    payload = b""
    if body is not None:
        lines.append("Content-Type: application/json")
        if chunked:
            lines.append("Transfer-Encoding: chunked")
            payload = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 1000]), body[i:i + 1000])
                               for i in range(0, len(body), 1000)) + b"0\r\n\r\n"
        else:
            lines.append(f"Content-Length: {len(body)}")
            payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def chat(size: int = 0) -> bytes:
    return json.dumps({"model": "llama-8b", "messages": [{"role": "user", "content": PROMPT + "x" * size}]}).encode()


def reached(proxy, before: int) -> list:
    # nginx answered after the upstream did (or without asking it): whatever reached it is recorded
    return proxy["seen"][before:]


# --- keys ----------------------------------------------------------------------------------------

def test_the_exact_key_is_accepted_and_never_forwarded(proxy):
    before = len(proxy["seen"])
    status, _ = raw(proxy["api"], request("POST", POST_ROUTE[proxy["runtime"]], body=chat()))
    assert status == 200
    got = reached(proxy, before)
    assert len(got) == 1 and "Authorization" not in got[0]["headers"]


@pytest.mark.parametrize("variant", [KEY.lower(), KEY.upper(), KEY.swapcase(), KEY[:-1], KEY + "x", "x" + KEY,
                                     KEY[:-1] + KEY[-1].swapcase(), f"{KEY}x ", ""])
def test_key_variants_are_refused(proxy, variant):
    before = len(proxy["seen"])
    status, _ = raw(proxy["api"], request("POST", POST_ROUTE[proxy["runtime"]], body=chat(), key=variant))
    assert status == 401, variant
    assert reached(proxy, before) == []


@pytest.mark.parametrize("auth,expected", [
    (f"bearer {KEY}", 200), (f"BEARER {KEY}", 200),         # RFC 9110: the scheme is case-insensitive
    (f"Bearer  {KEY}", 401), (f"Basic {KEY}", 401), (f"Bearer {KEY}, Bearer {KEY}", 401), (KEY, 401),
    (f"Bearer\t{KEY}", 401)])
def test_the_scheme_may_vary_in_case_but_nothing_else(proxy, auth, expected):
    status, _ = raw(proxy["api"], request("GET", GET_ROUTE[proxy["runtime"]], auth=auth))
    assert status == expected, auth


def test_a_missing_key_gets_a_bearer_challenge(proxy):
    status, _ = raw(proxy["api"], request("GET", GET_ROUTE[proxy["runtime"]], key=None))
    assert status == 401


# --- paths ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/v1/load_lora_adapter%2f..%2fmodels", "/v1/load_lora_adapter%2F..%2Fmodels", "/v1/models/..%2fload_lora_adapter",
    "/v1/%2e%2e/collective_rpc", "/v1/models%2f", "/v1/chat%2fcompletions", "/v1/chat/completions%00",
    "/v1/models/../models", "/v1/./models/../../sleep", "/v1%5cmodels", "/v1\\models", "/v1/models?x=../../sleep",
    "/%2e%2e/v1/models", "/v1/chat/completions/..", "/v1/models/%2E%2E/%2E%2E/metrics"])
def test_encoded_and_dot_segment_paths_are_refused(proxy, path):
    before = len(proxy["seen"])
    status, _ = raw(proxy["api"], request("GET", path))
    assert status in (400, 404), path
    assert reached(proxy, before) == [], f"{path} reached the runtime"


def test_the_runtime_receives_the_normalised_route_only(proxy):
    before = len(proxy["seen"])
    route = GET_ROUTE[proxy["runtime"]]
    status, _ = raw(proxy["api"], request("GET", route.replace("/", "//") + "?debug=1&x=y"))
    assert status == 200
    got = reached(proxy, before)
    assert [g["path"] for g in got] == [route]          # slashes merged, query string dropped


@pytest.mark.parametrize("case", ["upper", "suffix", "semicolon"])
def test_near_miss_routes_are_unknown(proxy, case):
    route = POST_ROUTE[proxy["runtime"]]
    path = {"upper": route.upper(), "suffix": route + "/x", "semicolon": route + ";x=1"}[case]
    before = len(proxy["seen"])
    status, _ = raw(proxy["api"], request("POST", path, body=chat()))
    assert status == 404 and reached(proxy, before) == []


def test_admin_routes_are_unreachable_even_with_a_key(proxy):
    before = len(proxy["seen"])
    for path in ADMIN[proxy["runtime"]]:
        for method in ("GET", "POST"):
            status, body = raw(proxy["api"], request(method, path, body=b"{}" if method == "POST" else None))
            assert status == 404 and b"reached" not in body, (method, path)
    assert reached(proxy, before) == []


# --- methods -------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,route", [("GET", "post"), ("PUT", "post"), ("DELETE", "post"), ("PATCH", "post"),
                                          ("OPTIONS", "post"), ("POST", "get"), ("DELETE", "get"), ("PUT", "get")])
def test_each_route_takes_only_its_method(proxy, method, route):
    path = POST_ROUTE[proxy["runtime"]] if route == "post" else GET_ROUTE[proxy["runtime"]]
    before = len(proxy["seen"])
    status, _ = raw(proxy["api"], request(method, path, body=b"{}" if method in ("PUT", "PATCH", "POST") else None))
    assert status == 405, (method, path)
    assert reached(proxy, before) == []


@pytest.mark.parametrize("method", ["TRACE", "CONNECT", "PROPFIND", "MOVE"])
def test_unusual_methods_never_reach_the_runtime(proxy, method):
    before = len(proxy["seen"])
    status, _ = raw(proxy["api"], request(method, GET_ROUTE[proxy["runtime"]]))
    assert status in (400, 405, 501)
    assert reached(proxy, before) == []


def test_health_is_open_but_only_for_get(proxy):
    assert raw(proxy["api"], request("GET", "/health", key=None))[0] == 200
    before = len(proxy["seen"])
    assert raw(proxy["api"], request("POST", "/health", key=None, body=b"{}"))[0] == 405
    assert reached(proxy, before) == []


# --- bodies and smuggling ------------------------------------------------------------------------

def test_an_oversize_body_is_refused(proxy):
    before = len(proxy["seen"])
    assert raw(proxy["api"], request("POST", POST_ROUTE[proxy["runtime"]], body=chat(MAX_BODY)))[0] == 413
    assert reached(proxy, before) == []


def test_an_oversize_chunked_body_is_refused_before_the_runtime_sees_a_byte(proxy):
    before = len(proxy["seen"])
    status, _ = raw(proxy["api"], request("POST", POST_ROUTE[proxy["runtime"]], body=chat(MAX_BODY * 2), chunked=True))
    assert status == 413
    assert reached(proxy, before) == []


def test_a_chunked_body_under_the_cap_reaches_the_runtime_with_a_length(proxy):
    before = len(proxy["seen"])
    body = chat(500)
    assert raw(proxy["api"], request("POST", POST_ROUTE[proxy["runtime"]], body=body, chunked=True))[0] == 200
    got = reached(proxy, before)
    assert len(got) == 1 and got[0]["body"] == body
    assert got[0]["headers"].get("Content-Length") == str(len(body)) and "Transfer-Encoding" not in got[0]["headers"]


@pytest.mark.parametrize("framing", [
    # CL.TE: nginx would read the chunked body; a back end trusting CL would see a second request
    b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST /collective_rpc HTTP/1.1\r\n\r\n0\r\n\r\n",
    b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    b"Content-Length: 4\r\nContent-Length: 40\r\n\r\n{}{}",
    b"Content-Length: -1\r\n\r\n{}",
])
def test_request_smuggling_framings_are_refused(proxy, framing):
    before = len(proxy["seen"])
    head = (f"POST {POST_ROUTE[proxy['runtime']]} HTTP/1.1\r\nHost: attack.test\r\nAuthorization: Bearer {KEY}\r\n"
            "Content-Type: application/json\r\nConnection: close\r\n").encode()
    status, _ = raw(proxy["api"], head + framing)
    assert status in (400, 501), framing
    assert reached(proxy, before) == []


def test_a_pipelined_second_request_is_judged_on_its_own(proxy):
    before = len(proxy["seen"])
    body = b"{}"
    first = request("POST", POST_ROUTE[proxy["runtime"]], body=body).replace(b"Connection: close\r\n", b"")
    second = request("POST", "/collective_rpc", body=body)
    raw(proxy["api"], first + second)
    assert [g["path"] for g in reached(proxy, before)] == [POST_ROUTE[proxy["runtime"]]]


# --- headers -------------------------------------------------------------------------------------

def test_client_identity_and_cookie_headers_never_reach_the_runtime(proxy):
    before = len(proxy["seen"])
    spoof = {"Cookie": "session=stolen", "X-Forwarded-For": "10.9.9.9", "X-Forwarded-Host": "admin.internal",
             "X-Forwarded-Proto": "http", "X-Forwarded-Port": "1", "X-Real-IP": "10.9.9.9",
             "Forwarded": "for=10.9.9.9;host=admin", "X-Api-Key": KEY, "Proxy-Authorization": f"Bearer {KEY}",
             "X-Original-URL": "/collective_rpc", "X-Rewrite-URL": "/collective_rpc", "Accept": "text/event-stream"}
    assert raw(proxy["api"], request("POST", POST_ROUTE[proxy["runtime"]], body=chat(), headers=spoof))[0] == 200
    got = reached(proxy, before)[0]
    names = {k.lower() for k in got["headers"]}
    assert names <= {"host", "content-type", "content-length", "accept", "x-request-id", "connection"}, names
    assert got["headers"]["Accept"] == "text/event-stream"          # what streaming clients need still passes
    assert got["headers"]["Host"] == f"127.0.0.1:{PORTS[proxy['runtime']]}"
    assert KEY not in json.dumps(got["headers"])


# --- metrics port --------------------------------------------------------------------------------

def test_the_metrics_port_serves_metrics_only_and_only_by_get(proxy):
    expected = 404 if proxy["runtime"] == "ollama" else 200      # Ollama exposes no Prometheus metrics
    assert raw(proxy["metrics"], request("GET", "/metrics", key=None))[0] == expected
    before = len(proxy["seen"])
    assert raw(proxy["metrics"], request("POST", "/metrics", key=None, body=b"{}"))[0] in (404, 405)
    assert raw(proxy["metrics"], request("GET", GET_ROUTE[proxy["runtime"]]))[0] == 404
    assert raw(proxy["metrics"], request("GET", "/metrics%2f..%2fv1/models", key=None))[0] in (400, 404)
    assert reached(proxy, before) == []


# --- audit ---------------------------------------------------------------------------------------

def test_the_audit_log_is_free_of_prompts_keys_and_query_strings(proxy):
    raw(proxy["api"], request("POST", POST_ROUTE[proxy["runtime"]], body=chat()))
    raw(proxy["api"], request("POST", POST_ROUTE[proxy["runtime"]], body=chat(), key=KEY.swapcase()))
    raw(proxy["api"], request("GET", GET_ROUTE[proxy["runtime"]] + f"?prompt={PROMPT}"))
    time.sleep(0.2)
    text = (proxy["dir"] / "log" / "audit.log").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines and {line["client"] for line in lines} <= {client_hash("ide-plugins"), ""}
    for secret in (PROMPT, KEY, KEY.lower(), KEY.upper(), KEY.swapcase(), "stolen", "10.9.9.9"):
        assert secret not in text, secret


def test_every_rendered_variant_passes_nginx_t(base_plan, tmp_path):
    """EKS (second metrics listener) and EC2 (runtime by container name) variants are valid nginx; the EC2
    `resolve` parameter needs nginx >= 1.27.3 (the image's 1.30), so it is checked on the image's version only."""
    (tmp_path / "run" / "tls").mkdir(parents=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "1", "-subj", "/CN=t", "-keyout", str(tmp_path / "run/tls/key.pem"),
                    "-out", str(tmp_path / "run/tls/cert.pem")], check=True, capture_output=True)
    (tmp_path / "run" / "keys.map").write_text(key_map_entry(KEY, client_hash("c")))
    for runtime in ("vllm", "ollama", "tgi"):
        plan = dataclasses.replace(base_plan, runtime=runtime)
        for kw in ({"cluster_metrics": True}, {"upstream_host": "llm-runtime"}):
            conf = render_nginx_conf(plan, 4096, ["10.20.0.0/24"], **kw)
            if "upstream_host" in kw:
                assert "server llm-runtime:" in conf and " resolve;" in conf and "resolver 127.0.0.11" in conf
                # `nginx -t` resolves upstream names at load: the container name exists only on the instance
                conf = conf.replace(" resolve;", ";").replace("server llm-runtime:", "server localhost:")
            conf = (conf.replace("http2 on;", "").replace("/run/llm", str(tmp_path / "run"))
                    .replace("/var/log/llm-proxy", str(tmp_path))
                    .replace("pid /tmp/nginx.pid;", f"pid {tmp_path}/x.pid;")
                    .replace("_temp_path /tmp/", f"_temp_path {tmp_path}/"))
            (tmp_path / "nginx.conf").write_text(conf)
            proc = subprocess.run(["nginx", "-t", "-c", str(tmp_path / "nginx.conf"), "-e", str(tmp_path / "e.log")],
                                  capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr
            assert ("listen 9444 ssl" in conf) == bool(kw.get("cluster_metrics"))

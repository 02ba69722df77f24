"""The instance's systemd units and containers, for every runtime: systemd's own verifier, start limits that
let OnFailure= fire (systemd 252 never fires it for a unit that Restart= keeps restarting), no host
networking, the key map the boot script writes, and the latency bridge the CloudWatch agent scrapes."""
from __future__ import annotations

import configparser
import dataclasses
import http.server
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from llm_platform.serving.proxy import METRICS_PORT, TARGET_PORT, render_nginx_conf
from llm_platform.serving.runtime import DOCKER_NETWORK, PORTS, image_ref
from llm_platform.serving.telemetry import BRIDGE_SCRIPT, BRIDGE_SOURCE, bridge_command, prometheus_config
from llm_platform.serving.userdata import RESTART_SEC, BootConfig, client_hash, render_user_data, start_limit_window
from llm_platform.settings import parse, read_stack_file
from llm_platform.sizing.planner import plan_stack
from tests.conftest import ROOT

REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
RUNTIMES = ("vllm", "ollama", "tgi")


@pytest.fixture(scope="module")
def plans():
    config = parse(read_stack_file(ROOT / "Pulumi.prod.yaml"))
    base = next(p for p in plan_stack(config) if p.name == "llama-8b")
    return {r: dataclasses.replace(base, runtime=r) for r in RUNTIMES}


def user_data(plan) -> dict:
    boot = BootConfig(plan=plan, region="us-east-1", registry=REGISTRY,
                      runtime_image=image_ref("vllm" if plan.runtime == "tgi" else plan.runtime, REGISTRY),
                      proxy_image=image_ref("proxy", REGISTRY), model_bucket="bucket", model_prefix="models/m/rev",
                      manifest="SHA256SUMS", manifest_sha256="a" * 64,
                      client_secrets={"ide-plugins": "arn:aws:secretsmanager:us-east-1:123456789012:secret:k"},
                      nginx_conf=render_nginx_conf(plan, 4096, ["10.0.0.0/8"], upstream_host="llm-runtime"),
                      cwagent_parameter="/llm-platform/prod/cwagent", prometheus_config=prometheus_config(plan))
    doc = yaml.safe_load(render_user_data(boot))
    return {f["path"]: f["content"] for f in doc["write_files"]}


def units(files: dict) -> dict[str, configparser.ConfigParser]:
    out = {}
    for path, text in files.items():
        if path.startswith("/etc/systemd/system/"):
            cp = configparser.ConfigParser(strict=False, interpolation=None)
            cp.optionxform = str
            cp.read_string(text)
            out[Path(path).stem] = cp
    return out


def docker_runs(files: dict) -> dict[str, list[str]]:
    """unit -> the argv of its `docker run`."""
    out = {}
    for name, cp in units(files).items():
        start = cp.get("Service", "ExecStart", fallback="")
        if start.startswith("docker run"):
            out[name] = shlex.split(start)
    return out


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_units_pass_systemd_analyze_verify(plans, runtime, tmp_path):
    stub = tmp_path / "stub"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    paths = []
    for path, text in user_data(plans[runtime]).items():
        if path.startswith("/etc/systemd/system/"):
            # executables that only exist on the instance are replaced by a stub: the verifier checks them
            text = re.sub(r"(Exec\w+=-?)(/\S+)",
                          lambda m: m.group(1) + (m.group(2) if os.path.exists(m.group(2)) else str(stub)), text)
            (tmp_path / Path(path).name).write_text(text)
            paths.append(str(tmp_path / Path(path).name))
    (tmp_path / "docker.service").write_text("[Service]\nExecStart=/bin/true\n")
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", *paths], capture_output=True, text=True)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_crash_looping_unit_ends_failed_so_on_failure_fires(plans, runtime):
    plan = plans[runtime]
    found = 0
    for name, cp in units(user_data(plan)).items():
        if name == "llm-unhealthy":
            continue
        # serving units replace the instance when they fail; the latency bridge only loses gauges
        expected = None if name == "llm-metrics-bridge" else "llm-unhealthy.service"
        assert cp.get("Unit", "OnFailure", fallback=None) == expected, name
        if not cp.has_option("Service", "Restart"):
            continue
        found += 1
        # [Unit] is where systemd (>= 230) reads the start limit; a Restart= unit without one that trips never
        # leaves `activating (auto-restart)` for `failed`, and OnFailure= never runs
        burst = int(cp.get("Unit", "StartLimitBurst"))
        window = int(cp.get("Unit", "StartLimitIntervalSec"))
        restart = int(cp.get("Service", "RestartSec"))
        run = plan.startup_seconds if name == "llm-runtime" else 0
        assert burst >= 1 and window >= burst * (run + restart), (name, burst, window)
    assert found >= 2                         # the runtime and the proxy at least
    assert start_limit_window(plan.startup_seconds) >= 3 * (plan.startup_seconds + RESTART_SEC)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_no_container_shares_the_host_network(plans, runtime):
    runs = docker_runs(user_data(plans[runtime]))
    assert set(runs) == {"llm-runtime", "llm-proxy"}
    for name, argv in runs.items():
        joined = " ".join(argv)
        assert "--network host" not in joined and "--net=host" not in joined and "--network=host" not in joined
        assert argv[argv.index("--network") + 1] == DOCKER_NETWORK, name
    published = lambda argv: [argv[i + 1] for i, a in enumerate(argv) if a in ("-p", "--publish")]  # noqa: E731
    port = PORTS[runtime]
    assert published(runs["llm-runtime"]) == [f"127.0.0.1:{port}:{port}"]
    assert published(runs["llm-proxy"]) == [f"{TARGET_PORT}:{TARGET_PORT}", f"{METRICS_PORT}:{METRICS_PORT}"]
    if runtime == "ollama":
        assert f"OLLAMA_HOST=0.0.0.0:{port}" in runs["llm-runtime"]     # inside its own namespace only


def _run_fetch_secrets(files: dict, tmp_path: Path, key: str) -> subprocess.CompletedProcess:
    script = files["/usr/local/sbin/llm-fetch-secrets"]
    env_file = tmp_path / "deployment.env"
    env_file.write_text("AWS_REGION=us-east-1\n")
    script = (script.replace("/etc/llm/deployment.env", str(env_file)).replace("/run/llm", str(tmp_path / "run"))
              .replace("chown ", "true "))
    (tmp_path / "fetch.sh").write_text(script)
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    (bindir / "aws").write_text(f"#!/bin/sh\nprintf '%s\\n' '{key}'\n")
    (bindir / "aws").chmod(0o755)
    return subprocess.run(["bash", str(tmp_path / "fetch.sh")], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"})


def test_the_boot_script_writes_case_sensitive_key_entries(plans, tmp_path):
    key = "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7dEf0hIj3kLm6n"
    proc = _run_fetch_secrets(user_data(plans["vllm"]), tmp_path, key)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "run" / "keys.map").read_text()
    assert text == f'"~^(?i:bearer) {key}$" "{client_hash("ide-plugins")}";\n'


@pytest.mark.parametrize("bad", ["short1", "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z.*", "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z$x"])
def test_the_boot_script_refuses_keys_that_are_not_plain_alphanumerics(plans, tmp_path, bad):
    proc = _run_fetch_secrets(user_data(plans["vllm"]), tmp_path, bad)
    assert proc.returncode != 0 and "is not 32+ letters and digits" in proc.stderr
    assert not (tmp_path / "run" / "keys.map").exists()


# --- latency histograms as gauges ----------------------------------------------------------------

HISTOGRAM = """# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{{le="0.1",model_name="m"}} {a}
vllm:time_to_first_token_seconds_bucket{{le="0.5",model_name="m"}} {b}
vllm:time_to_first_token_seconds_bucket{{le="1.0",model_name="m"}} {c}
vllm:time_to_first_token_seconds_bucket{{le="+Inf",model_name="m"}} {c}
vllm:time_to_first_token_seconds_sum{{model_name="m"}} {s}
vllm:time_to_first_token_seconds_count{{model_name="m"}} {c}
vllm:num_requests_waiting{{model_name="m"}} 0
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_bridge_turns_histogram_increments_into_quantile_gauges(plans, tmp_path):
    state = {"text": HISTOGRAM.format(a=50, b=90, c=100, s=20.0)}

    class Runtime(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            body = state["text"].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    upstream, port = _free_port(), _free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", upstream), Runtime)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    argv = bridge_command(plans["vllm"])
    assert argv[1] == BRIDGE_SCRIPT
    script = tmp_path / "bridge.py"
    script.write_text(BRIDGE_SOURCE)
    bridge = subprocess.Popen([sys.executable, str(script), f"http://127.0.0.1:{upstream}/metrics", str(port),
                               argv[4]])
    try:
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)

        def scrape() -> dict:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                    if line and not line.startswith("#")}

        first = scrape()
        # 100 observations: 50 <= 0.1 s, 40 in (0.1, 0.5], 10 in (0.5, 1.0]
        assert first["llm_time_to_first_token_seconds_p50"] == pytest.approx(0.1)
        assert first["llm_time_to_first_token_seconds_p90"] == pytest.approx(0.5)
        assert first["llm_time_to_first_token_seconds_p99"] == pytest.approx(0.95)
        assert first["llm_time_to_first_token_seconds_mean"] == pytest.approx(0.2)
        assert "vllm:num_requests_waiting" not in first          # gauges the agent already keeps are not copied
        assert scrape() == {}                                       # no requests since: no data point, not zero
        state["text"] = HISTOGRAM.format(a=50, b=90, c=110, s=27.0)  # 10 more, all slow
        second = scrape()
        assert second["llm_time_to_first_token_seconds_p50"] == pytest.approx(0.75)
        assert second["llm_time_to_first_token_seconds_mean"] == pytest.approx(0.7)
    finally:
        bridge.terminate()
        bridge.wait(timeout=10)
        server.shutdown()


def test_the_agent_keeps_only_metric_types_it_supports(plans):
    import json

    from llm_platform.serving.telemetry import cwagent_config
    config = json.loads(cwagent_config(plans["vllm"], audit_log_group="a", boot_log_group="b", metrics_log_group="m"))
    selectors = config["logs"]["metrics_collected"]["prometheus"]["emf_processor"]["metric_declaration"][0][
        "metric_selectors"]
    # histograms (and their _sum/_count/_bucket series) are dropped by the agent: none is selected
    assert not [s for s in selectors if re.search(r"time_to_first_token_seconds_(sum|count|bucket)", s)]
    assert "^llm_time_to_first_token_seconds_p99$" in selectors
    assert "llm-runtime-histograms" in prometheus_config(plans["vllm"])
    assert bridge_command(plans["ollama"]) == []                   # Ollama exports no metrics to bridge

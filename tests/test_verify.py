"""The deploy gate against a fake OpenAI-compatible server on 127.0.0.1 (tests/fake_openai.py): a deployment
that performs as planned passes, one twice as slow fails naming TPOT, and a gate that cannot judge (wrong key,
nothing listening, no plan, bad TLS) exits 2. Runs are scaled: a few seconds, a few tokens per request."""
from __future__ import annotations

import copy
import datetime as dt
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llm_platform.verify import spec as gate_spec
from llm_platform.verify.__main__ import main
from llm_platform.verify.judge import checks, percentile
from llm_platform.verify.report import render_text
from llm_platform.verify.schedule import arrivals
from llm_platform.verify.spec import Profile, default_duration, from_stack_file
from tests.conftest import ROOT
from tests.fake_openai import FakeServer

KEY = "test-client-key-0123456789abcdefghijklmnopqrstuv"
DURATION = "1"          # seconds: ramp 0.2 s, steady 0.8 s


def _stack(tmp: Path, name: str, load: dict, concurrency: int | None = None, model: str = "llama-8b") -> Path:
    """Pulumi.prod.yaml with one model kept and its load (and batch cap) scaled for a test."""
    raw = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    entry = next(m for m in raw["config"]["llm-platform:models"] if m["name"] == model)
    entry = copy.deepcopy(entry)
    entry["load"] = load
    if concurrency:
        entry["concurrency"] = concurrency
    raw["config"]["llm-platform:models"] = [entry]
    path = tmp / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gate")
    # llama-8b held to 4 sequences: the plan's TPOT (28 ms) sits well inside the stated 50 ms
    targets = _stack(tmp, "targets", {"requests_per_second": 15.0, "prompt_tokens": 300, "output_tokens": 16,
                                      "ttft_p99_seconds": 1.0, "tpot_p99_seconds": 0.05}, concurrency=4)
    # no targets: the limits are the plan's predictions (TTFT 0.12 s, TPOT 40 ms) +35 %
    predictions = _stack(tmp, "predictions", {"requests_per_second": 15.0, "prompt_tokens": 1500,
                                              "output_tokens": 16}, concurrency=4)
    embed = _stack(tmp, "embed", {"requests_per_second": 10.0, "prompt_tokens": 256, "ttft_p99_seconds": 0.2},
                   model="nomic-embed")
    raw = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())
    entry = next(m for m in raw["config"]["llm-platform:models"] if m["name"] == "llama-8b")
    entry = {k: v for k, v in entry.items() if k != "load"} | {"replicas": 2}
    raw["config"]["llm-platform:models"] = [entry]
    (tmp / "Pulumi.noload.yaml").write_text(yaml.safe_dump(raw))
    stacks = {"targets": targets, "predictions": predictions, "embed": embed, "noload": tmp / "Pulumi.noload.yaml"}
    # the gate spec JSON the in-VPC runners receive (`--plan`): planned once here, so concurrent runs below
    # spend no CPU on planning while another run is timing tokens
    for kind, path in list(stacks.items()):
        model = "nomic-embed" if kind == "embed" else "llama-8b"
        if kind == "noload":
            continue
        spec_path = tmp / f"{kind}.gate.json"
        spec_path.write_text(json.dumps({"deployments": [from_stack_file(path, model).as_dict()]}))
        stacks[f"{kind}.json"] = spec_path
    return stacks


def _gate(capsys, monkeypatch, *args) -> tuple[int, dict]:
    """`verify ... --json` in-process: exit code and the JSON it printed."""
    monkeypatch.setenv("GATE_KEY", KEY)
    code = main([*args, "--api-key-env", "GATE_KEY", "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def _gates(monkeypatch, *argvs) -> list[dict]:
    """Several `python -m llm_platform.verify ... --json` runs at once, each its own process (as the gate runs in
    its own pod or task: no interpreter lock shared with another run): their JSON reports, in order."""
    env = {**os.environ, "GATE_KEY": KEY}
    procs = [subprocess.Popen([sys.executable, "-m", "llm_platform.verify", *a, "--api-key-env", "GATE_KEY", "--json"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for a in argvs]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        report = json.loads(out)
        assert report["exit_code"] == proc.returncode, err
        reports.append(report)
    return reports


def _fake(path: Path, model: str, slowdown: float = 1.0, **kw) -> FakeServer:
    """A fake deployment performing at the plan's predictions for `path` (slowdown 2: twice as slow)."""
    tp = from_stack_file(path, model).throughput
    return FakeServer(model, KEY, tp["ttft_seconds"] * slowdown, (tp["tpot_seconds"] or 0) * slowdown, **kw)


@pytest.mark.parametrize("kind", ["targets", "predictions"])
def test_a_deployment_at_its_plan_passes_and_twice_as_slow_fails_on_tpot(stacks, kind, monkeypatch):
    """Against stated targets and, for a load with none, against the plan's predictions +35 %."""
    path, spec = stacks[kind], stacks[f"{kind}.json"]
    with _fake(path, "llama-8b") as at_plan_srv, _fake(path, "llama-8b", 2.0) as slow_srv:
        # a busy test machine delays a first token by up to a few hundred ms (the gate's own pod has its CPU
        # to itself); both runs get the same allowance, and TPOT, which has none, still separates them
        argv = lambda srv, *more: ["--plan", str(spec), "--model", "llama-8b", "--endpoint", srv.url,  # noqa: E731
                                   "--duration", DURATION, "--path-allowance", "0.25", *more]
        at_plan, slow = _gates(monkeypatch, argv(at_plan_srv, "--api", "completions"), argv(slow_srv))
        bodies = at_plan_srv.requests
    assert at_plan["exit_code"] == 0 and at_plan["verdict"] == "pass", at_plan["missed"]
    judged = {c["metric"] for c in at_plan["checks"] if c["judged"]}
    assert {"ttft_p99_seconds", "tpot_p99_seconds", "error_rate", "requests_per_second",
            "output_tokens_per_second"} <= judged
    m = at_plan["measured"]
    assert m["requests"]["steady"] == 12 and m["error_rate"] == 0
    # token counts are the server's own usage: exactly the planned output, prompts calibrated to the stated size
    assert m["usage_reported"] and m["output_tokens_mean"] == 16
    stated = 300 if kind == "targets" else 1500
    assert abs(m["prompt_tokens_mean"] - stated) <= 0.05 * stated

    assert slow["exit_code"] == 1 and slow["verdict"] == "fail"
    missed = {x["metric"]: x for x in slow["missed"]}
    tpot = missed["tpot_p99_seconds"]
    assert tpot["measured"] > tpot["planned"]
    if kind == "targets":
        assert set(missed) == {"tpot_p99_seconds"}          # 2 x 47 ms TTFT is still inside the stated 1 s
        assert tpot["planned"] == 0.05 and tpot["basis"] == "target load.tpot_p99_seconds"
    else:
        assert tpot["basis"] == "plan prediction +35%"
        ttft = next(c for c in slow["checks"] if c["metric"] == "ttft_p99_seconds")
        assert ttft["limit"] == pytest.approx(ttft["planned"] * 1.35 + 0.25)
    assert slow["measurement"]["verdict"] == "fail" and "tpot_p99_seconds" in slow["measurement"]["missed"]
    text = render_text(slow)                      # what `verify` prints without --json
    assert "FAIL (exit 1)" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("missed: TPOT p99"))
    assert f"planned {tpot['planned'] * 1000:.1f} ms" in line and f"measured {tpot['measured'] * 1000:.1f} ms" in line

    # how the requests looked on the wire (the completions run)
    gen = [b for b in bodies if b["max_tokens"] == 16]
    assert len(gen) >= 12 and all(b["stream"] and b["stream_options"] == {"include_usage": True} for b in gen)
    assert all(b["min_tokens"] == 16 and b["ignore_eos"] for b in gen)         # vLLM: exactly the planned output
    assert all("prompt" in b and b["model"] == "llama-8b" for b in gen)
    assert len({b["prompt"][:18] for b in gen}) == len(gen)                  # no shared prefix to cache


def test_an_embedding_deployment_is_judged_on_its_latency(stacks, monkeypatch):
    with FakeServer("nomic-embed", KEY, ttft=0.01, tpot=0.0) as fast, \
            FakeServer("nomic-embed", KEY, ttft=0.3, tpot=0.0) as slow:
        ok, bad = _gates(monkeypatch, *(["--plan", str(stacks["embed.json"]), "--model", "nomic-embed",
                                         "--endpoint", s.url,
                                         "--duration", "1"] for s in (fast, slow)))
    assert ok["exit_code"] == 0, ok["missed"]
    assert {c["metric"] for c in ok["checks"]} == {"ttft_p99_seconds", "error_rate", "requests_per_second"}
    assert ok["measured"]["tpot_p99_seconds"] is None
    assert bad["exit_code"] == 1 and [x["metric"] for x in bad["missed"]] == ["ttft_p99_seconds"]


def test_a_model_without_a_load_is_judged_on_single_sequence_speed(stacks, capsys, monkeypatch):
    """No stated load: one request at a time (512 / 128 tokens), limits from the plan's single-sequence decode rate
    and prefill rate (+35 %): a deployment at those rates passes; twice as slow misses TPOT."""
    path = stacks["noload"]
    spec = from_stack_file(path, "llama-8b")
    tp = spec.throughput
    tpot = 1 / tp["decode_tokens_per_s_single"]
    ttft = 512 / tp["prefill_tokens_per_s"] + tpot
    with FakeServer("llama-8b", KEY, ttft, tpot) as srv:
        code, ok = _gate(capsys, monkeypatch, "--config", str(path), "--model", "llama-8b", "--endpoint", srv.url,
                         "--duration", "0.2", "--path-allowance", "0.25")
    assert ok["load"]["mode"] == "sequential" and ok["measured"]["output_tokens_mean"] == 128
    assert code == 0, ok["missed"]
    tpot_check = next(c for c in ok["checks"] if c["metric"] == "tpot_p99_seconds")
    assert tpot_check["planned"] == pytest.approx(tpot, rel=1e-4) and tpot_check["basis"] == "plan prediction +35%"
    assert {c["metric"] for c in ok["checks"]} == {"ttft_p99_seconds", "tpot_p99_seconds", "error_rate"}
    # the same judgement of a deployment twice as slow
    slow = {**ok["measured"], "tpot_p99_seconds": 2 * ok["measured"]["tpot_p99_seconds"]}
    missed = [c.metric for c in checks(spec, gate_spec.profile_of(spec, 0.2), slow, 0.35, 0.01) if not c.passed]
    assert missed == ["tpot_p99_seconds"]


def test_only_vllm_is_asked_for_an_exact_output_length():
    from llm_platform.verify.client import Endpoint, _body
    for runtime, extras in (("vllm", True), ("ollama", False), ("tgi", False)):
        route, body = _body(Endpoint("http://x/v1", "m", "k", "chat", runtime), "hello", 64)
        assert route == "chat/completions" and body["max_tokens"] == 64 and body["stream_options"]["include_usage"]
        assert ("ignore_eos" in body and "min_tokens" in body) is extras, runtime


# ----------------------------------------------------------------------------- could not run: exit 2

def test_auth_refused_is_exit_2(stacks, capsys, monkeypatch):
    path = stacks["targets"]
    with FakeServer("llama-8b", "another-key", 0.01, 0.01) as srv:
        code, report = _gate(capsys, monkeypatch, "--config", str(path), "--model", "llama-8b",
                             "--endpoint", srv.url, "--duration", "1")
        assert srv.requests == []                          # nothing was generated with a refused key
    assert code == 2 and report["verdict"] == "error"
    assert "auth refused" in report["error"] and "HTTP 401" in report["error"]


def test_unreachable_endpoint_is_exit_2(stacks, capsys, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]          # closed when the block ends: nothing listens there
    code, report = _gate(capsys, monkeypatch, "--config", str(stacks["targets"]), "--model", "llama-8b",
                         "--endpoint", f"http://127.0.0.1:{port}/v1", "--duration", "1")
    assert code == 2 and "endpoint unreachable" in report["error"]


def test_no_plan_for_the_model_is_exit_2(stacks, capsys, monkeypatch):
    code, report = _gate(capsys, monkeypatch, "--config", str(stacks["targets"]), "--model", "llama-70b",
                         "--endpoint", "http://127.0.0.1:9/v1")
    assert code == 2 and "no plan for model 'llama-70b'" in report["error"] and "llama-8b" in report["error"]


def test_unknown_stack_and_missing_key_are_exit_2(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code, report = _gate(capsys, monkeypatch, "--stack", "nope", "--model", "x", "--endpoint", "http://127.0.0.1:9/v1")
    assert code == 2 and "no stack named 'nope'" in report["error"] and "prod" in report["error"]
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    code = main(["--stack", "prod", "--model", "llama-8b", "--endpoint", "http://127.0.0.1:9/v1",
                 "--api-key-env", "NO_SUCH_KEY_VAR"])
    err = capsys.readouterr().err
    assert code == 2 and "NO_SUCH_KEY_VAR" in err and "COULD NOT RUN" in err


def test_https_with_the_internal_ca(stacks, tmp_path, capsys, monkeypatch):
    """--ca-file trusts the internal CA; without it the system store refuses the certificate: exit 2."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "llm-platform test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                           critical=False).sign(ca_key, hashes.SHA256()))
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    path = stacks["targets"]
    with _fake(path, "llama-8b", cert=tmp_path / "cert.pem", key=tmp_path / "key.pem") as srv:
        assert srv.url.startswith("https://")
        code, report = _gate(capsys, monkeypatch, "--config", str(path), "--model", "llama-8b",
                             "--endpoint", srv.url, "--duration", "1", "--ca-file", str(tmp_path / "ca.pem"))
        assert report["verdict"] != "error", report          # trusted, served and judged over TLS
        assert report["measured"]["requests"]["ok"] >= 5
        code, report = _gate(capsys, monkeypatch, "--config", str(path), "--model", "llama-8b",
                             "--endpoint", srv.url, "--duration", "1")
    assert code == 2 and "CERTIFICATE_VERIFY_FAILED" in report["error"] and "--ca-file" in report["error"]


# ----------------------------------------------------------------------------- pure parts

def test_steady_phase_offers_exactly_the_stated_rate_after_a_rising_ramp():
    p = Profile("poisson", 40.0, 100, 10, duration_s=100.0, ramp_s=20.0)
    sched = arrivals(p, seed=7)
    steady = [a.at for a in sched if a.phase == "steady"]
    ramp = [a.at for a in sched if a.phase == "ramp"]
    assert len(steady) == 3200 and all(20.0 <= t <= 100.0 for t in steady)
    assert len(ramp) == 400 and all(0 <= t <= 20.0 for t in ramp)
    late = sum(t > 10 for t in ramp) / len(ramp)
    assert 0.7 < late < 0.8                        # linear intensity: 3/4 of the ramp's requests in its second half
    gaps = [b - a for a, b in zip(steady, steady[1:], strict=False)]
    cv = (sum((g - 0.025) ** 2 for g in gaps) / len(gaps)) ** 0.5 / 0.025
    assert 0.8 < cv < 1.2                        # exponential-like gaps (CV 1), not a metronome (CV 0)
    assert arrivals(p, seed=7) == sched and arrivals(p, seed=8) != sched


def test_percentile_matches_linear_interpolation():
    xs = [float(i) for i in range(1, 101)]
    assert percentile(xs, 50) == pytest.approx(50.5) and percentile(xs, 99) == pytest.approx(99.01)
    assert percentile([3.0], 99) == 3.0 and percentile([], 99) is None


def test_default_duration_gives_300_steady_requests_at_prod_rates():
    prod = from_stack_file(ROOT / "Pulumi.prod.yaml", "llama-70b")
    p = gate_spec.profile_of(prod)
    assert p.mode == "poisson" and p.requests_per_second == 1.0
    assert p.steady_s * p.requests_per_second >= gate_spec.MIN_STEADY_REQUESTS and p.ramp_s == pytest.approx(
        0.2 * p.duration_s)
    assert default_duration(1.0) == 375 and default_duration(4.0) == 94 and default_duration(30.0) == 75
    assert default_duration(0.1) == 750              # the steady phase is capped at 600 s


def test_a_model_with_no_load_is_probed_one_request_at_a_time():
    dev = from_stack_file(ROOT / "Pulumi.dev.yaml", "qwen-coder-7b")
    p = gate_spec.profile_of(dev, 30)
    assert dev.load is None and p.mode == "sequential" and p.ramp_s == 0 and arrivals(p) == []
    assert p.prompt_tokens == 512 and p.output_tokens == 128

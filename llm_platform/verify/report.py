"""The gate's report (JSON and text) and its measurement record.

The measurement record is the feedback into the catalog: one case in the shape of the published vLLM serving
benchmarks (tests/data/published/vllm_throughput.yaml, `cases:`), so the performance model's checks and
calibration read a deployed run exactly as they read a published one, plus what only a gate knows: the
latency tails, the plan's predictions it was judged against, and the verdict. Fields:

    id                 gate-<stack>-<deployment>-<UTC time>
    url, setup, source, date      the endpoint; the load offered, in words; who measured, when
    model              Hugging Face repository id
    instance, gpu, gpu_count, tensor_parallel, pipeline_parallel, precision, kv_cache_dtype, max_model_len
    max_num_seqs       the runtime's batch bound per replica (the plan's `concurrency`)
    replicas           the plan's replicas at its minimum (what the per-server numbers below divide by)
    concurrency        sequences in flight per replica, measured (Little's law: sum of request times / window)
    prompt, output     mean tokens per request as the server counted them (`usage`)
    measured           tpot_ms (median per-request TPOT, as the benchmarks report it), output_tok_s (per replica),
                       tpot_p99_ms, ttft_p50_ms, ttft_p99_ms, itl_p99_ms, e2e_p50_ms, requests_per_s (all replicas),
                       error_rate, samples
    predicted          the plan: tpot_ms, ttft_ms, batch, requests_per_s_per_replica, replicas_for_load,
                       decode_tokens_per_s_single, prefill_tokens_per_s, usd_per_million_output_tokens
    targets            the stated ttft_p99_seconds and tpot_p99_seconds (or null)
    verdict, missed    pass | fail, and the metrics that missed
"""
from __future__ import annotations

import datetime as dt

from .judge import Check, missed

LABELS = {"ttft_p99_seconds": "TTFT p99", "tpot_p99_seconds": "TPOT p99", "error_rate": "error rate",
          "requests_per_second": "requests/s", "output_tokens_per_second": "output tokens/s"}
UNITS = {"ttft_p99_seconds": "s", "tpot_p99_seconds": "s", "error_rate": "", "requests_per_second": "/s",
         "output_tokens_per_second": "/s"}


def _r(x, n=4):
    return None if x is None else round(x, n)


def build(spec, endpoint: str, profile, m: dict, cs: list[Check], notes: list[str], tolerance: float,
          wall_s: float, now: dt.datetime | None = None) -> dict:
    now = now or dt.datetime.now(dt.UTC)
    miss = missed(cs)
    report = {
        "verdict": "fail" if miss else "pass", "exit_code": 1 if miss else 0,
        "stack": spec.stack, "deployment": spec.name, "model": spec.deployment.get("model"), "endpoint": endpoint,
        "time": now.isoformat(timespec="seconds"),
        "load": profile.as_dict(), "tolerance": tolerance, "wall_seconds": round(wall_s, 3),
        "measured": {k: (_r(v, 6) if isinstance(v, float) else v) for k, v in m.items()},
        "checks": [c.as_dict() for c in cs],
        "missed": [{"metric": c.metric, "measured": _r(c.measured, 6), "planned": _r(c.limit, 6), "basis": c.basis}
                   for c in miss],
        "notes": notes,
    }
    report["measurement"] = measurement(spec, endpoint, profile, m, report, now)
    return report


def measurement(spec, endpoint: str, profile, m: dict, report: dict, now: dt.datetime) -> dict:
    d, tp, load = spec.deployment, spec.throughput, spec.load or {}
    gpu = d.get("gpu") or {}
    replicas = int((d.get("replicas") or {}).get("min") or 1)
    ms = lambda x: None if x is None else round(x * 1000, 3)  # noqa: E731
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    shape = (f"Poisson {profile.requests_per_second:g} req/s" if profile.mode == "poisson"
             else "one request at a time") + f", {profile.prompt_tokens} prompt" + \
        (f" / {profile.output_tokens} output tokens" if profile.output_tokens else " tokens") + \
        f", {profile.steady_s:g} s steady after a {profile.ramp_s:g} s ramp, {d.get('runtime')}, " \
        f"{replicas} replica(s) planned"
    out_s = m["output_tokens_per_second"]
    return {
        "id": f"gate-{spec.stack}-{spec.name}-{stamp}",
        "url": endpoint, "setup": f"llm-platform verify: {shape}",
        "source": f"llm-platform verify: {spec.stack}/{spec.name} at {endpoint}, {now.isoformat(timespec='seconds')}",
        "date": now.date().isoformat(),
        "model": d.get("model"), "deployment": spec.name, "stack": spec.stack, "runtime": d.get("runtime"),
        "instance": d.get("instance_type"), "gpu": gpu.get("name"), "gpu_count": gpu.get("count"),
        "tensor_parallel": d.get("tensor_parallel_size"), "pipeline_parallel": d.get("pipeline_parallel_size"),
        "precision": d.get("precision"), "kv_cache_dtype": d.get("kv_cache_dtype"),
        "max_model_len": d.get("max_model_len"), "max_num_seqs": d.get("concurrency"), "replicas": replicas,
        "concurrency": max(1, round(m["in_flight_mean"] / replicas)),
        "prompt": round(m["prompt_tokens_mean"]) if m["prompt_tokens_mean"] else profile.prompt_tokens,
        "output": round(m["output_tokens_mean"]) if m["output_tokens_mean"] else profile.output_tokens,
        "measured": {"tpot_ms": ms(m["tpot_p50_seconds"]),
                     "output_tok_s": None if out_s is None else round(out_s / replicas, 2),
                     "tpot_p99_ms": ms(m["tpot_p99_seconds"]), "ttft_p50_ms": ms(m["ttft_p50_seconds"]),
                     "ttft_p99_ms": ms(m["ttft_p99_seconds"]), "itl_p99_ms": ms(m["itl_p99_seconds"]),
                     "e2e_p50_ms": ms(m["e2e_p50_seconds"]), "requests_per_s": _r(m["requests_per_second"]),
                     "error_rate": _r(m["error_rate"]), "samples": m["samples"],
                     "usage_reported": m["usage_reported"]},
        "predicted": {"tpot_ms": ms(tp.get("tpot_seconds")), "ttft_ms": ms(tp.get("ttft_seconds")),
                      "batch": tp.get("batch_for_load"),
                      "requests_per_s_per_replica": tp.get("requests_per_s_per_replica"),
                      "replicas_for_load": tp.get("replicas_for_load"),
                      "decode_tokens_per_s_single": tp.get("decode_tokens_per_s_single"),
                      "prefill_tokens_per_s": tp.get("prefill_tokens_per_s"),
                      "usd_per_million_output_tokens": tp.get("usd_per_million_output_tokens")},
        "targets": ({"ttft_p99_seconds": load.get("ttft_p99_seconds"), "tpot_p99_seconds": load.get("tpot_p99_seconds")}
                    if spec.load else None),
        "verdict": report["verdict"], "missed": [x["metric"] for x in report["missed"]],
    }


def error_report(message: str, deployment: str | None = None, endpoint: str | None = None) -> dict:
    return {"verdict": "error", "exit_code": 2, "deployment": deployment, "endpoint": endpoint, "error": message}


def _fmt(metric: str, x: float | None) -> str:
    if x is None:
        return "-"
    if metric == "error_rate":
        return f"{x:.2%}"
    if metric.endswith("_seconds"):
        return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"
    return f"{x:,.2f}{UNITS.get(metric, '')}"


def render_text(report: dict) -> str:
    if report["verdict"] == "error":
        who = f" {report['deployment']}" if report.get("deployment") else ""
        return f"verify{who}: COULD NOT RUN (exit 2)\n  {report['error']}"
    m, load = report["measured"], report["load"]
    head = f"verify {report['stack']}/{report['deployment']} ({report['model']}) at {report['endpoint']}: " \
           f"{'PASS' if report['verdict'] == 'pass' else 'FAIL'} (exit {report['exit_code']})"
    if load["mode"] == "poisson":
        shape = f"Poisson {load['requests_per_second']:g} req/s"
    else:
        shape = "one request at a time (no load stated)"
    tokens = f"{load['prompt_tokens']} prompt" + (f" / {load['output_tokens']} output" if load["output_tokens"] else "")
    req = m["requests"]
    lines = [head,
             f"load: {shape}, {tokens} tokens; ramp {load['ramp_seconds']:g} s, steady {load['steady_seconds']:g} s; "
             f"{req['steady']} steady requests ({req['failed']} failed), {req['ramp']} in the ramp",
             f"measured: TTFT p50 {_fmt('ttft_p99_seconds', m['ttft_p50_seconds'])}, "
             f"TPOT p50 {_fmt('tpot_p99_seconds', m['tpot_p50_seconds'])}, prompt/output tokens per request "
             f"{m['prompt_tokens_mean'] or '-'} / {m['output_tokens_mean'] or '-'} (server usage)",
             "",
             f"{'metric':<18} {'measured':>12} {'limit':>12} {'planned':>12}  basis"]
    for c in report["checks"]:
        status = "ok" if c["passed"] else ("MISSED" if c["judged"] else "below (not judged)")
        lines.append(f"{LABELS.get(c['metric'], c['metric']):<18} {_fmt(c['metric'], c['measured']):>12} "
                     f"{('<= ' if c['bound'] == 'max' else '>= ') + _fmt(c['metric'], c['limit']):>12} "
                     f"{_fmt(c['metric'], c['planned']):>12}  {c['basis']}  {status}")
    if report["missed"]:
        lines.append("")
        lines += [f"missed: {LABELS.get(x['metric'], x['metric'])}: measured {_fmt(x['metric'], x['measured'])}, "
                  f"planned {_fmt(x['metric'], x['planned'])} ({x['basis']})" for x in report["missed"]]
    if m["errors"]:
        lines.append("errors: " + ", ".join(f"{k} x{v}" for k, v in sorted(m["errors"].items())))
    lines += [f"note: {n}" for n in report["notes"]]
    return "\n".join(lines)

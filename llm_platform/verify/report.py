"""The gate's report (JSON and text) and its measurement record.

The measurement record is the feedback into the catalog: one entry in the shape of the published-measurement
fixtures (`measurements:` list; source, date, model, instance_type, gpu, tp, precision, ...), with the
measured numbers and the plan they were judged against, so the performance model's calibration can use
deployed runs next to published ones. Fields (all numbers in seconds, tokens or tokens/s):

    source             "llm-platform verify: <stack>/<deployment> at <endpoint>, <UTC time>"
    url                the endpoint judged
    date               UTC date of the run (YYYY-MM-DD)
    model              Hugging Face repository id
    deployment, stack, runtime
    instance_type, gpu, gpu_count, tp, pp, precision, kv_cache_dtype, max_model_len
    concurrency        the runtime's max sequences per replica (the plan's batch for the load is predicted.batch)
    replicas           the plan's {min, max}
    load               {mode, requests_per_second, prompt_tokens, output_tokens, duration_seconds, ...}
    prompt_tokens, output_tokens     the means the server reported (usage)
    measured           {ttft_p50, ttft_p99, tpot_p50, tpot_p99, itl_p99, e2e_p50 (seconds),
                        output_tokens_per_s, requests_per_s, error_rate, samples}
    predicted          the plan's {ttft, tpot, batch, requests_per_s_per_replica, replicas_for_load,
                        decode_tokens_per_s_single, prefill_tokens_per_s, usd_per_million_output_tokens}
    targets            the stated {ttft_p99, tpot_p99} or null
    verdict            pass | fail, and missed: the metrics that missed
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
    return {
        "source": f"llm-platform verify: {spec.stack}/{spec.name} at {endpoint}, {now.isoformat(timespec='seconds')}",
        "url": endpoint, "date": now.date().isoformat(),
        "model": d.get("model"), "deployment": spec.name, "stack": spec.stack, "runtime": d.get("runtime"),
        "instance_type": d.get("instance_type"), "gpu": gpu.get("name"), "gpu_count": gpu.get("count"),
        "tp": d.get("tensor_parallel_size"), "pp": d.get("pipeline_parallel_size"),
        "precision": d.get("precision"), "kv_cache_dtype": d.get("kv_cache_dtype"),
        "max_model_len": d.get("max_model_len"), "concurrency": d.get("concurrency"),
        "replicas": d.get("replicas"),
        "load": profile.as_dict(),
        "prompt_tokens": _r(m["prompt_tokens_mean"], 1), "output_tokens": _r(m["output_tokens_mean"], 1),
        "measured": {"ttft_p50": _r(m["ttft_p50_seconds"]), "ttft_p99": _r(m["ttft_p99_seconds"]),
                     "tpot_p50": _r(m["tpot_p50_seconds"], 5), "tpot_p99": _r(m["tpot_p99_seconds"], 5),
                     "itl_p99": _r(m["itl_p99_seconds"], 5), "e2e_p50": _r(m["e2e_p50_seconds"]),
                     "output_tokens_per_s": _r(m["output_tokens_per_second"], 2),
                     "requests_per_s": _r(m["requests_per_second"]), "error_rate": _r(m["error_rate"]),
                     "samples": m["samples"], "usage_reported": m["usage_reported"]},
        "predicted": {"ttft": tp.get("ttft_seconds"), "tpot": tp.get("tpot_seconds"),
                      "batch": tp.get("batch_for_load"),
                      "requests_per_s_per_replica": tp.get("requests_per_s_per_replica"),
                      "replicas_for_load": tp.get("replicas_for_load"),
                      "decode_tokens_per_s_single": tp.get("decode_tokens_per_s_single"),
                      "prefill_tokens_per_s": tp.get("prefill_tokens_per_s"),
                      "usd_per_million_output_tokens": tp.get("usd_per_million_output_tokens")},
        "targets": ({"ttft_p99": load.get("ttft_p99_seconds"), "tpot_p99": load.get("tpot_p99_seconds")}
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

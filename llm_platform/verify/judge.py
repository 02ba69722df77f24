"""Measured vs planned: the metrics of the steady phase and the checks that decide the exit code.

Limits, per metric:
- ttft_p99_seconds, tpot_p99_seconds: the model entry's stated target (`load.ttft_p99_seconds`,
  `load.tpot_p99_seconds`) where given; else the plan's prediction (`throughput.ttft_seconds`,
  `throughput.tpot_seconds`, which the planner itself holds against p99 targets) x (1 + tolerance). For a
  model with no stated load (one request at a time): the plan's single-sequence decode rate and its
  prefill rate for the probe's prompt, x (1 + tolerance). A TTFT prediction also gets the path allowance
  (handshakes, load balancer, proxy: the plan models the GPU only); a stated target is end to end already.
- error_rate: at most the gate's max error rate (1 % by default) of the steady phase's requests.
- requests_per_second: the steady phase completes at least (1 - max error rate) x the stated rate.
- output_tokens_per_second (vLLM, where every request is held to its planned length): at least the stated
  rate x output tokens x (1 - tolerance). Other runtimes stop at EOS: reported, not judged.
Only slower than planned fails: a deployment faster than its plan passes (the report still shows by how
much, for calibration).
"""
from __future__ import annotations

from dataclasses import dataclass

from .run import Run
from .spec import DEFAULT_PATH_ALLOWANCE_S, GateSpec, Profile

MIN_SAMPLES_FOR_P99 = 100


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class Check:
    metric: str             # ttft_p99_seconds, tpot_p99_seconds, error_rate, requests_per_second, ...
    measured: float | None
    limit: float
    bound: str              # "max" (measured must not exceed) | "min"
    basis: str              # where the limit comes from
    planned: float | None = None     # the plan's prediction, when there is one
    judged: bool = True

    @property
    def passed(self) -> bool:
        if self.measured is None:
            return False
        return self.measured <= self.limit if self.bound == "max" else self.measured >= self.limit

    def as_dict(self) -> dict:
        r = lambda x: None if x is None else round(x, 6)  # noqa: E731
        return {"metric": self.metric, "measured": r(self.measured), "limit": r(self.limit), "bound": self.bound,
                "basis": self.basis, "planned": r(self.planned), "judged": self.judged,
                "passed": self.passed}


def metrics(run: Run, profile: Profile) -> dict:
    steady = [r for r in run.results if r.phase == "steady"]
    ok = [r for r in steady if r.ok]
    ttft = [r.ttft for r in ok if r.ttft is not None]
    tpot = [r.tpot for r in ok if r.tpot is not None]
    itl = [x for r in ok for x in r.itl]
    window = profile.steady_s if profile.mode == "poisson" else max(run.wall_s, 1e-9)
    out_tokens = sum(r.output_tokens or 0 for r in ok)
    prompt = [r.prompt_tokens for r in ok if r.prompt_tokens]
    errors: dict[str, int] = {}
    for r in steady:
        if not r.ok:
            errors[r.error or "unknown"] = errors.get(r.error or "unknown", 0) + 1
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return {
        "requests": {"ramp": sum(r.phase == "ramp" for r in run.results), "steady": len(steady), "ok": len(ok),
                     "failed": len(steady) - len(ok)},
        "errors": errors,
        "ttft_p50_seconds": percentile(ttft, 50), "ttft_p99_seconds": percentile(ttft, 99),
        "tpot_p50_seconds": percentile(tpot, 50), "tpot_p99_seconds": percentile(tpot, 99),
        "itl_p99_seconds": percentile(itl, 99),
        "e2e_p50_seconds": percentile([r.e2e for r in ok if r.e2e is not None], 50),
        "output_tokens_per_second": out_tokens / window if profile.output_tokens else None,
        "requests_per_second": len(ok) / window,
        "offered_requests_per_second": len(steady) / window,
        "error_rate": (len(steady) - len(ok)) / len(steady) if steady else 1.0,
        "prompt_tokens_mean": mean(prompt),
        "output_tokens_mean": mean([r.output_tokens for r in ok if r.output_tokens]),
        "usage_reported": all(r.usage_reported for r in ok) if ok else False,
        "samples": len(ok),
        # Little's law: mean requests in flight over the steady window (all replicas together)
        "in_flight_mean": sum(r.e2e or 0.0 for r in ok) / window,
    }


def planned_latency(spec: GateSpec, profile: Profile) -> tuple[float | None, float | None]:
    """The plan's TTFT and TPOT predictions for the offered profile."""
    tp = spec.throughput
    if profile.mode == "poisson":
        return tp.get("ttft_seconds"), tp.get("tpot_seconds")
    single = tp.get("decode_tokens_per_s_single")
    tpot = 1.0 / single if single else None
    prefill = tp.get("prefill_tokens_per_s")
    ttft = profile.prompt_tokens / prefill + (tpot or 0.0) if prefill else None
    return ttft, tpot


def checks(spec: GateSpec, profile: Profile, m: dict, tolerance: float, max_error_rate: float,
           path_allowance_s: float = DEFAULT_PATH_ALLOWANCE_S) -> list[Check]:
    load = spec.load or {}
    ttft_pred, tpot_pred = planned_latency(spec, profile)
    out: list[Check] = []
    widen = f"plan prediction +{tolerance:.0%}"

    def latency(metric: str, target_key: str, predicted: float | None, allowance: float = 0.0):
        if load.get(target_key) is not None:
            out.append(Check(metric, m[metric], float(load[target_key]), "max", f"target load.{target_key}",
                             predicted))
        elif predicted is not None:
            basis = widen + (f" +{allowance * 1000:g} ms serving path" if allowance else "")
            out.append(Check(metric, m[metric], predicted * (1 + tolerance) + allowance, "max", basis, predicted))

    latency("ttft_p99_seconds", "ttft_p99_seconds", ttft_pred, path_allowance_s)
    if profile.output_tokens:
        latency("tpot_p99_seconds", "tpot_p99_seconds", tpot_pred)
    out.append(Check("error_rate", m["error_rate"], max_error_rate, "max", f"gate max error rate {max_error_rate:g}"))
    if profile.mode == "poisson":
        rate = profile.requests_per_second
        # the steady phase offers round(rate x seconds) requests: judge against what was offered, never more
        offered = min(rate, m["offered_requests_per_second"])
        out.append(Check("requests_per_second", m["requests_per_second"], offered * (1 - max_error_rate) - 1e-9,
                         "min", "stated load.requests_per_second less the max error rate", rate))
        if profile.output_tokens:
            planned = rate * profile.output_tokens
            out.append(Check("output_tokens_per_second", m["output_tokens_per_second"], planned * (1 - tolerance),
                             "min", f"stated rate x output_tokens -{tolerance:.0%}", planned,
                             judged=spec.runtime == "vllm"))
    return out


def missed(cs: list[Check]) -> list[Check]:
    return [c for c in cs if c.judged and not c.passed]


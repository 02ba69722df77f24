"""What a deployment promises: its plan (DeploymentPlan.as_dict()) and the load it was sized for.

A GateSpec is all the gate needs to know about a deployment. It comes from a stack file (the planner runs,
pure and offline), or from a JSON file of the same shape (`GateSpec.as_dict()`), which is what the in-VPC
runners (Kubernetes Job, ECS task) receive: they carry no stack files.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from . import CannotRun

# Where the plan states no target, its prediction is the limit, widened by this much: the performance
# model is checked within 35 % against published measurements held out of its calibration (README,
# "Capacity planning"; tests/test_performance.py).
DEFAULT_TOLERANCE = 0.35
# The plan's TTFT is the GPU's (queueing, prefill, one decode step); a client also waits for the serving path:
# a TCP and TLS 1.3 handshake on a new connection, the load balancer and the nginx proxy, each a few ms in one
# region. Where TTFT is judged against a prediction (not a stated end-to-end target), this much is added.
DEFAULT_PATH_ALLOWANCE_S = 0.05
# Failed requests the gate accepts (timeouts, 5xx, broken streams), as a share of the steady phase.
DEFAULT_MAX_ERROR_RATE = 0.01
# A model without a stated load is probed one request at a time with this shape, and judged on the
# plan's single-sequence decode rate and prefill rate.
PROBE_PROMPT_TOKENS = 512
PROBE_OUTPUT_TOKENS = 128
# Steady-phase requests wanted for a p99: with n samples the p99 estimate is the (0.01 n)-th largest;
# at 300 its rank moves by +-1.7 requests (1 sigma), about +-0.6 percentile points.
MIN_STEADY_REQUESTS = 300
MIN_STEADY_SECONDS = 60
MAX_STEADY_SECONDS = 600
RAMP_SHARE = 0.2            # the first fifth of --duration ramps from zero to the stated rate


@dataclass(frozen=True)
class GateSpec:
    stack: str
    deployment: dict            # DeploymentPlan.as_dict()
    load: dict | None        # the model entry's `load` (requests_per_second, prompt/output tokens, targets)

    @property
    def name(self) -> str:
        return self.deployment["name"]

    @property
    def task(self) -> str:
        return self.deployment.get("task", "generate")

    @property
    def runtime(self) -> str:
        return self.deployment.get("runtime", "vllm")

    @property
    def throughput(self) -> dict:
        return self.deployment.get("throughput") or {}

    def as_dict(self) -> dict:
        return {"stack": self.stack, "deployment": self.deployment, "load": self.load}


@dataclass(frozen=True)
class Profile:
    """The load the gate offers: open-loop Poisson arrivals at the stated rate, or, for a model with no
    stated load, one request at a time (closed loop)."""
    mode: str                       # "poisson" | "sequential"
    requests_per_second: float | None
    prompt_tokens: int
    output_tokens: int | None    # None for embedders
    duration_s: float               # ramp + steady
    ramp_s: float

    @property
    def steady_s(self) -> float:
        return self.duration_s - self.ramp_s

    def as_dict(self) -> dict:
        return {"mode": self.mode, "requests_per_second": self.requests_per_second,
                "prompt_tokens": self.prompt_tokens, "output_tokens": self.output_tokens,
                "duration_seconds": round(self.duration_s, 3), "ramp_seconds": round(self.ramp_s, 3),
                "steady_seconds": round(self.steady_s, 3)}


def default_duration(rate: float | None) -> float:
    """Ramp + steady long enough for MIN_STEADY_REQUESTS at `rate`, steady clamped to [60, 600] s."""
    if not rate:
        return float(MIN_STEADY_SECONDS) / (1 - RAMP_SHARE)
    steady = min(MAX_STEADY_SECONDS, max(MIN_STEADY_SECONDS, math.ceil(MIN_STEADY_REQUESTS / rate)))
    return math.ceil(steady / (1 - RAMP_SHARE))


def profile_of(spec: GateSpec, duration_s: float | None = None) -> Profile:
    load = spec.load
    if load:
        rate = float(load["requests_per_second"])
        dur = float(duration_s) if duration_s else default_duration(rate)
        return Profile("poisson", rate, int(load["prompt_tokens"]),
                       int(load["output_tokens"]) if load.get("output_tokens") else None, dur, dur * RAMP_SHARE)
    mml = int(spec.deployment.get("max_model_len") or 2048)
    prompt = min(PROBE_PROMPT_TOKENS, mml // 2)
    out = None if spec.task == "embed" else min(PROBE_OUTPUT_TOKENS, mml - prompt)
    dur = float(duration_s) if duration_s else default_duration(None)
    return Profile("sequential", None, prompt, out, dur, 0.0)


def from_stack_file(path: Path, model: str, stack: str | None = None) -> GateSpec:
    """Plan the stack (pure, offline) and return the named deployment's spec."""
    from llm_platform.settings import ConfigErrors, parse, read_stack_file
    from llm_platform.sizing.planner import PlanningError, plan_stack
    stack = stack or path.stem.removeprefix("Pulumi.")
    try:
        config = parse(read_stack_file(path))
        plans = plan_stack(config)
    except (ConfigErrors, PlanningError) as exc:
        raise CannotRun(f"{path.name} cannot be planned:\n" +
                        "\n".join(f"  {e.path}: {e.message}" for e in exc.errors)) from None
    for plan, spec in zip(plans, config.models, strict=True):
        if plan.name == model:
            load = spec.load.model_dump() if spec.load is not None else None
            return GateSpec(stack, plan.as_dict(), load)
    raise CannotRun(f"no plan for model {model!r} in {path.name}: its models are "
                    f"{', '.join(p.name for p in plans)} (--model takes a deployment name)")


def from_json(path: Path, model: str) -> GateSpec:
    """A GateSpec JSON file, or a list/mapping of them ({"deployments": [...]}) keyed by deployment name."""
    try:
        text = _env_value(str(path)) if str(path).startswith("env:") else Path(path).read_text(encoding="utf-8")
        doc = json.loads(text)
    except (OSError, ValueError) as exc:
        raise CannotRun(f"cannot read the gate spec {path}: {exc}") from None
    items = doc.get("deployments", [doc]) if isinstance(doc, dict) else doc
    specs = [GateSpec(d.get("stack", ""), d["deployment"], d.get("load")) for d in items
             if isinstance(d, dict) and isinstance(d.get("deployment"), dict)]
    for s in specs:
        if s.name == model:
            return s
    raise CannotRun(f"no plan for model {model!r} in {path}: it holds {', '.join(s.name for s in specs) or 'none'}")


def _env_value(ref: str) -> str:
    """`env:NAME` -> the variable's value (ECS hands the gate its spec and CA this way: no files, read-only root)."""
    import os
    name = ref[4:]
    if not os.environ.get(name):
        raise CannotRun(f"{ref}: the environment variable {name} is not set")
    return os.environ[name]

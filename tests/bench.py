"""`make bench`: wall time and peak RSS of the offline prod plan, and the planner alone on 1,000
random deployments. Targets on a 2-core machine: plan <= 3 s, 1,000 plans <= 1 s, RSS <= 400 MB.
Not a timed test: numbers vary with the machine; this prints them for the record."""
from __future__ import annotations

import copy
import random
import resource
import subprocess
import sys
import time

from tests.conftest import MINIMAL, ROOT

TARGETS = {"plan_s": 3.0, "plans_1000_s": 1.0, "rss_mb": 400}


def bench_plan(runs: int = 3) -> tuple[float, float]:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "plan.py"), "--stack", "prod", "--json"], check=True,
                       stdout=subprocess.DEVNULL, cwd=ROOT)
        best = min(best, time.perf_counter() - t)
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return best, rss_mb


def random_specs(n: int, seed: int = 7):
    from llm_platform import catalog
    from llm_platform.settings import parse
    rng = random.Random(seed)
    cat = catalog.load()
    generators = [m for m in cat.models.values() if m.task == "generate" and m.architecture.num_hidden_layers < 100]
    out = []
    while len(out) < n:
        m = rng.choice(generators)
        runtime = rng.choice(["vllm", "vllm", "ollama", "tgi"])
        precision = rng.choice(["bf16", "fp8", "awq", "gptq"] if runtime != "ollama" else ["q4_k_m", "q8_0", "fp16"])
        mml = rng.choice([2048, 4096, 8192, 16384])
        raw = copy.deepcopy(MINIMAL)
        raw["llm-platform:images"] = {**raw["llm-platform:images"], "tgi": "registry.example.com/tgi@sha256:" + "0" * 64}
        raw["llm-platform:models"] = [{"name": "m", "model": m.id, "runtime": runtime, "precision": precision,
                                       "max_model_len": min(mml, m.context_window), "concurrency": rng.randint(1, 32),
                                       "max_num_batched_tokens": 16384}]
        stack = parse(raw)
        out.append((stack.models[0], stack))
    return out


def bench_planner(n: int = 1000) -> float:
    from llm_platform.sizing.planner import PlanningError, plan_model
    specs = random_specs(n)
    t = time.perf_counter()
    for spec, stack in specs:
        try:
            plan_model(spec, 0, stack)
        except PlanningError:
            pass                       # an infeasible deployment is planned too: it is searched in full
    return time.perf_counter() - t


def main() -> int:
    plan_s, rss_mb = bench_plan()
    plans_s = bench_planner()
    rows = [("plan.py --stack prod --json (best of 3)", plan_s, "s", TARGETS["plan_s"]),
            ("peak RSS of plan.py", rss_mb, "MB", TARGETS["rss_mb"]),
            ("planner on 1,000 random deployments", plans_s, "s", TARGETS["plans_1000_s"])]
    for label, value, unit, target in rows:
        print(f"{label:45s} {value:8.2f} {unit:2s}  target <= {target} {unit}  {'ok' if value <= target else 'OVER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Write policies/data/facts.json: the few catalog facts the rules need, so the pack runs on its own
(`pulumi policy publish`, or copied into another repository) without the project's catalog or planner.

    python -m llm_platform.policies.vendor          # rewrite policies/data/facts.json
    python -m llm_platform.policies.vendor --check  # exit 1 if the file differs from the catalog

Development-time only: this module imports llm_platform; no rule imports this module.
tests/test_policies_standalone.py checks that the file equals what the catalog says today.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from .core import JSON

OUT = Path(__file__).resolve().parent / "data" / "facts.json"
GIB = float(2 ** 30)


def build() -> JSON:
    from llm_platform.catalog import load
    from llm_platform.sizing.memory import calibration, weight_bytes

    cat = load()
    gpus = {}
    instances = {}
    for name, inst in sorted(cat.instances.items()):
        gpu = cat.gpu_of(inst)
        gpus[gpu.name] = {"memory_gib": round(gpu.memory_gib, 4), "compute_capability": gpu.compute_capability}
        instances[name] = {"gpu": gpu.name, "gpu_count": inst.gpu_count}
    models = {}
    for mid, info in sorted(cat.models.items()):
        a = info.architecture
        weights = {}
        for prec in cat.precisions:
            try:
                weights[prec] = round(weight_bytes(a, prec) / GIB, 4)
            except (KeyError, ValueError, ZeroDivisionError):
                continue     # a precision the architecture cannot be stored in
        models[mid] = {
            "task": info.task, "ollama_tag": info.ollama_tag, "trust_remote_code": info.trust_remote_code,
            "parameters": info.published_parameters,
            "num_hidden_layers": a.num_hidden_layers, "num_attention_heads": a.num_attention_heads,
            "kv_heads": a.kv_heads, "head_size": a.head_size, "max_position_embeddings": a.max_position_embeddings,
            "mla_kv_dim": (a.kv_lora_rank + a.qk_rope_head_dim)
            if a.kv_lora_rank is not None and a.qk_rope_head_dim is not None else None,     # MLA (is_mla)
            "weights_gib": weights,
        }
    cal = calibration()
    return {
        "generated_by": "python -m llm_platform.policies.vendor (from llm_platform/catalog and sizing/memory.py)",
        "units": "GiB = 2**30 bytes; memory_gib is what CUDA reports as total (the base of gpu_memory_utilization)",
        "gpus": gpus,
        "instances": instances,
        "precisions": {n: {"runtimes": list(p.runtimes), "min_compute_capability": p.min_compute_capability}
                       for n, p in sorted(cat.precisions.items())},
        "kv_dtype_bytes": {n: k.bytes for n, k in sorted(cat.kv_dtypes.items())},
        # the smallest per-GPU overheads of the planner's model (catalog/overheads.yaml): the pack's fit check
        # is a lower bound, it reports only models that cannot fit whatever the rest of the profile needs
        "overhead_gib": {
            "vllm": round(cal["vllm"]["non_torch_gib"] + cal["vllm"]["cudagraph_base_gib"], 4),
            "comm_base": cal["vllm"]["comm_base_gib"], "comm_per_rank": cal["vllm"]["comm_per_rank_gib"],
            "ollama": round(cal["ollama"]["minimum_mib"] / 1024, 4),
        },
        "models": models,
    }


def render(doc: JSON) -> str:
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m llm_platform.policies.vendor", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="exit 1 if policies/data/facts.json is stale")
    args = p.parse_args(argv)
    text = render(build())
    if args.check:
        current = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is stale: run python -m llm_platform.policies.vendor", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

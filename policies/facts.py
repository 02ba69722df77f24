"""The catalog facts the rules need (GPU memory of instance types, model shapes and weight sizes),
vendored in policies/data/facts.json so the pack runs without the project's catalog and planner.
Regenerate with `python -m llm_platform.policies.vendor`; a test checks the file equals the catalog."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TypedDict

DATA = Path(__file__).resolve().parent / "data" / "facts.json"


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_gib: float
    compute_capability: float


@dataclass(frozen=True)
class Instance:
    name: str
    gpu: Gpu
    gpu_count: int


@dataclass(frozen=True)
class Model:
    id: str
    task: str
    ollama_tag: str | None
    trust_remote_code: bool
    parameters: int
    num_hidden_layers: int
    num_attention_heads: int
    kv_heads: int
    head_size: int
    max_position_embeddings: int
    mla_kv_dim: int | None
    weights_gib: dict[str, float] = field(default_factory=dict)     # precision -> GiB

    def kv_bytes_per_token_per_layer(self, dtype_bytes: float, tp: int = 1) -> float:
        """One token's K and V in one layer on one tensor-parallel rank (MLA: one replicated latent)."""
        if self.task == "embed":
            return 0.0
        if self.mla_kv_dim:
            return self.mla_kv_dim * dtype_bytes
        return 2 * -(-self.kv_heads // tp) * self.head_size * dtype_bytes


class Precision(TypedDict):
    min_compute_capability: float
    runtimes: list[str]


@dataclass(frozen=True)
class Facts:
    instances: dict[str, Instance]
    gpus: dict[str, Gpu]
    models: dict[str, Model]
    precisions: dict[str, Precision]
    kv_dtype_bytes: dict[str, float]
    overhead_gib: dict[str, float]


@lru_cache(maxsize=1)
def facts() -> Facts:
    raw = json.loads(DATA.read_text(encoding="utf-8"))
    gpus = {n: Gpu(n, float(g["memory_gib"]), float(g["compute_capability"])) for n, g in raw["gpus"].items()}
    instances = {n: Instance(n, gpus[i["gpu"]], int(i["gpu_count"])) for n, i in raw["instances"].items()}
    models = {mid: Model(id=mid, **m) for mid, m in raw["models"].items()}
    return Facts(instances, gpus, models, raw["precisions"], raw["kv_dtype_bytes"], raw["overhead_gib"])

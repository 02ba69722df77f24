"""GPU memory a serving process needs, per GPU, from the physics of the model.

    per GPU = weights on this GPU + KV cache on this GPU + overhead
    overhead (vLLM, TGI) = CUDA context + NCCL buffers (TP x PP > 1) + activation peak of one
                           prefill chunk or of the sampler + CUDA graphs + weight slack
    overhead (Ollama)    = Ollama's own reservation: 457 MiB minimum + compute graph + one spare layer

The constants are fitted to measured vLLM and Ollama logs; catalog/overheads.yaml cites them.
Everything here is pure arithmetic on catalog facts; GiB = 2**30 bytes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from llm_platform import catalog
from llm_platform.catalog import Catalog, Precision
from . import gguf
from llm_platform.catalog.architecture import Architecture
from .params import Tensor, tensors

GIB = float(2 ** 30)


@lru_cache(maxsize=1)
def calibration() -> dict:
    with open(Path(__file__).parent.parent / "catalog" / "overheads.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@dataclass(frozen=True)
class Workload:
    """What one replica must hold: the parts of a model entry that size memory."""
    runtime: str
    precision: str
    kv_cache_dtype: str
    max_model_len: int
    concurrency: int
    max_num_batched_tokens: int
    gpu_memory_utilization: float


@dataclass(frozen=True)
class Layout:
    """How one replica is spread over GPUs: TP ranks x PP stages, or Ollama's layer split."""
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    layer_split: int = 1      # Ollama: GPUs the layers are divided over (no tensor parallelism)

    @property
    def gpus(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel * self.layer_split

    @property
    def stages(self) -> int:
        return self.pipeline_parallel * self.layer_split


@dataclass(frozen=True)
class Memory:
    weights_gib: float            # the replica's weights (all its GPUs)
    kv_cache_gib: float           # the replica's KV cache (all its GPUs)
    overhead_gib: float           # per GPU
    per_gpu_weights_gib: float
    per_gpu_kv_cache_gib: float
    per_gpu_required_gib: float
    per_gpu_usable_gib: float
    kv_bytes_per_token: float     # whole model, unreplicated

    @property
    def fits(self) -> bool:
        return self.per_gpu_required_gib <= self.per_gpu_usable_gib


# ----------------------------------------------------------------------------- weights

def _tensor_bytes(t: Tensor, p: Precision, ggml_type: str | None, cat: Catalog) -> float:
    if p.kind == "gguf":
        block, size = cat.ggml_bytes_per_block[ggml_type]
        return t.numel / block * size
    if t.role != "linear" or t.name == "output" or p.kind == "float":
        # 16-bit: embeddings, norms, biases, router, and the LM head (kept 16-bit by fp8/AWQ/GPTQ)
        return t.numel * (p.bits / 8 if p.kind == "float" else 2)
    if p.kind == "fp8":
        return t.numel * 1 + 4 * t.count          # one fp32 scale per tensor (per expert)
    # int4_group: AWQ / GPTQ. Groups run along the input dimension.
    groups = math.ceil(t.in_features / p.group_size) * t.out_features * t.count
    return (t.numel * p.bits / 8 + groups * (p.scale_bits + p.zero_bits) / 8
            + t.in_features * t.count * p.index_bits / 8)


@lru_cache(maxsize=512)
def tensor_bytes(arch: Architecture, precision: str) -> tuple[float, ...]:
    """Bytes of every tensor of `tensors(arch)` stored in `precision`."""
    cat = catalog.load()
    p = cat.precisions[precision]
    ts = tensors(arch)
    types = (gguf.tensor_types(arch, ts, precision, p.default, {k: v[0] for k, v in cat.ggml_bytes_per_block.items()})
             if p.kind == "gguf" else [None] * len(ts))
    return tuple(_tensor_bytes(t, p, g, cat) for t, g in zip(ts, types))


@lru_cache(maxsize=512)
def weight_bytes(arch: Architecture, precision: str) -> float:
    return sum(tensor_bytes(arch, precision))


_KV_PROJ = {"attn_k", "attn_v", "attn_k_bias", "attn_v_bias"}


@lru_cache(maxsize=4096)
def _per_rank_split(arch: Architecture, precision: str, tp: int):
    """Per-TP-rank bytes: (per-layer list, bytes before the first layer, bytes after the last)."""
    kv = arch.kv_heads
    kv_share = math.ceil(kv / tp) / kv   # with TP > KV heads, each rank keeps a whole replicated head
    layers = [0.0] * arch.num_hidden_layers
    head = tail = 0.0
    for t, b in zip(tensors(arch), tensor_bytes(arch, precision)):
        if not t.sharded:
            share = b
        elif t.name in _KV_PROJ and not arch.is_mla:
            share = b * kv_share
        else:
            share = b / tp
        if t.layer >= 0:
            layers[t.layer] += share
        elif t.name in ("token_embd", "position_embd", "token_types", "token_embd_norm"):
            head += share
        else:
            tail += share
    return tuple(layers), head, tail


@lru_cache(maxsize=4096)
def _heaviest_stage(layers: tuple[float, ...], stages: int) -> tuple[float, int]:
    """Bytes and layer count of the heaviest run of ceil(L / stages) consecutive layers."""
    n = math.ceil(len(layers) / stages)
    window = sum(layers[:n])
    best = window
    for i in range(n, len(layers)):
        window += layers[i] - layers[i - n]
        best = max(best, window)
    return best, n


# ----------------------------------------------------------------------------- KV cache

def kv_bytes_per_token_per_layer(arch: Architecture, dtype_bytes: float, tp: int = 1) -> float:
    """One token's K and V in one layer, on one TP rank. MLA keeps one latent, replicated on every rank."""
    if arch.task == "embed":
        return 0.0                      # encoder-only: attention over the input, no cache kept
    if arch.is_mla:
        return (arch.kv_lora_rank + arch.qk_rope_head_dim) * dtype_bytes
    return 2 * math.ceil(arch.kv_heads / tp) * arch.head_size * dtype_bytes


# ----------------------------------------------------------------------------- overheads

def _activation_bytes(arch: Architecture, w: Workload, tp: int, c: dict) -> float:
    """Peak of vLLM's profile run: one prefill chunk through a layer, or the sampler's logits."""
    h = arch.hidden_size
    if arch.is_mla:
        attn = arch.num_attention_heads * (2 * arch.qk_nope_head_dim + arch.qk_rope_head_dim + arch.v_head_dim)
    else:
        attn = (arch.num_attention_heads + 2 * arch.kv_heads) * arch.head_size
    per_mlp = 3 if arch.mlp == "gated" else 2      # gate+up output and the activation, or fc1 and activation
    if arch.is_moe:
        width = arch.expert_intermediate * (arch.num_experts_per_tok + arch.num_shared_experts)
        width = max(width, arch.intermediate_size if arch.first_dense_layers else 0)
    else:
        width = arch.intermediate_size
    forward = w.max_num_batched_tokens * 2 * (c["residual_copies"] * h + (attn + per_mlp * width) / tp)
    sampler = 0.0 if arch.task == "embed" else w.concurrency * arch.vocab_size * 4 * c["sampler_copies"]
    return max(forward, sampler)


def _vllm_overhead(arch: Architecture, w: Workload, layout: Layout, stage_layers: int, weights: float) -> float:
    c = calibration()["vllm"]
    ranks = layout.tensor_parallel * layout.pipeline_parallel
    comm = c["comm_base_gib"] + c["comm_per_rank_gib"] * layout.tensor_parallel if ranks > 1 else 0.0
    graphs = (c["cudagraph_base_gib"] + c["cudagraph_per_layer_hidden_gib"] * stage_layers * arch.hidden_size
              + c["cudagraph_per_extra_rank_gib"] * (layout.tensor_parallel - 1))
    act = _activation_bytes(arch, w, layout.tensor_parallel, c) / GIB
    return c["non_torch_gib"] + comm + act + graphs + c["weight_slack"] * weights / GIB


def _ollama_graph_bytes(arch: Architecture, w: Workload, split: bool) -> float:
    c = calibration()["ollama"]
    b = min(c["batch"], w.max_model_len)
    e, h, v = arch.hidden_size, arch.num_attention_heads, arch.vocab_size
    ctx = w.max_model_len * w.concurrency      # Ollama multiplies num_ctx by OLLAMA_NUM_PARALLEL
    if not split:
        return max(4 * b * (1 + 4 * e + ctx * (1 + h)), 4 * b * (e + v))
    return 4 * b * e + max(4 * b * (1 + e + max(ctx, e)) + e * e * 9 / 16 + 4 * ctx * (b * h + e / h * arch.kv_heads),
                           4 * b * (e + v) + e * v * 105 / 128)


# ----------------------------------------------------------------------------- the estimate

def estimate(arch: Architecture, w: Workload, layout: Layout, gpu_total_gib: float, cat: Catalog) -> Memory:
    tp = layout.tensor_parallel
    layers, head, tail = _per_rank_split(arch, w.precision, tp)
    stage_bytes, stage_layers = _heaviest_stage(layers, layout.stages)
    kv_dtype = cat.kv_dtypes[w.kv_cache_dtype].bytes
    kv_layer_token = kv_bytes_per_token_per_layer(arch, kv_dtype, tp)
    pool_tokens = w.max_model_len * w.concurrency
    if w.runtime == "ollama":
        # llama.cpp keeps token_embd in host memory; the output head sits on the last GPU.
        weights = stage_bytes + tail
        overhead = (calibration()["ollama"]["minimum_mib"] * 2 ** 20
                    + _ollama_graph_bytes(arch, w, layout.layer_split > 1) + max(layers)) / GIB
    else:
        weights = stage_bytes + (max(head, tail) if layout.stages > 1 else head + tail)
        overhead = _vllm_overhead(arch, w, layout, stage_layers, weights)
    kv = pool_tokens * kv_layer_token * stage_layers
    required = (weights + kv) / GIB + overhead
    total_weights = weight_bytes(arch, w.precision)
    return Memory(
        weights_gib=total_weights / GIB,
        kv_cache_gib=pool_tokens * kv_layer_token * arch.num_hidden_layers * tp / GIB,
        overhead_gib=overhead,
        per_gpu_weights_gib=weights / GIB,
        per_gpu_kv_cache_gib=kv / GIB,
        per_gpu_required_gib=required,
        per_gpu_usable_gib=gpu_total_gib * w.gpu_memory_utilization,
        kv_bytes_per_token=kv_bytes_per_token_per_layer(arch, kv_dtype) * arch.num_hidden_layers,
    )


def max_sequences(arch: Architecture, w: Workload, layout: Layout, gpu_total_gib: float, cat: Catalog) -> int:
    """Sequences of max_model_len the layout could hold at once (0 if even one does not fit)."""
    lo, hi = 0, 1
    probe = lambda n: estimate(arch, _with(w, concurrency=n), layout, gpu_total_gib, cat).fits  # noqa: E731
    if not probe(1):
        return 0
    while probe(hi * 2) and hi < 1 << 20:
        hi *= 2
    lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if probe(mid) else (lo, mid)
    return lo


def max_context(arch: Architecture, w: Workload, layout: Layout, gpu_total_gib: float, cat: Catalog) -> int:
    """Longest max_model_len (multiple of 256) that fits at the workload's concurrency; 0 if none."""
    probe = lambda n: estimate(arch, _with(w, max_model_len=n), layout, gpu_total_gib, cat).fits  # noqa: E731
    lo, hi = 0, max(1, w.max_model_len // 256)
    if not probe(256):
        return 0
    lo = 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if probe(mid * 256) else (lo, mid)
    return lo * 256


def _with(w: Workload, **changes) -> Workload:
    return Workload(**{**w.__dict__, **changes})

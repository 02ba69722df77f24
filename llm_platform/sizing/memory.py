"""GPU memory a serving process needs, per GPU, from the physics of the model.

vLLM (and TGI, which follows the same profile-then-allocate scheme) splits each GPU in two
(vllm/v1/worker/gpu_worker.py, determine_available_memory; cited in catalog/overheads.yaml):

    inside  gpu_memory_utilization x total:  weights + activation peak of the profile run
                                             + non-torch allocations made during it
                                             + CUDA-graph memory (profiled since vLLM 0.21) + KV cache
    outside it (the 1 - utilization headroom): the CUDA context and NCCL communicators (created
                                             before vLLM's baseline snapshot)

    fits = the inside items <= utilization x total  (vLLM's own check: else it refuses to start)
           and inside + outside + a safety margin <= total

The plan passes the KV pool it sized to vLLM as --kv-cache-memory-bytes (serving/runtime.py), so
the server holds exactly the planned sequences; the rest of the GPU is the stated margin.

Ollama: its own reservation (457 MiB minimum + compute graph + one spare layer), all counted inside.

The constants are fitted to published vLLM and Ollama logs; catalog/overheads.yaml cites them and
tests/test_published.py bounds the error on a public truth set. Pure arithmetic on catalog facts;
GiB = 2**30 bytes.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from llm_platform import catalog
from llm_platform.catalog import Catalog, Precision
from llm_platform.catalog.architecture import Architecture
from llm_platform.catalog.checkpoint import QuantLayout

from . import gguf
from .params import Tensor, module_names, tensors

GIB = float(2 ** 30)


@lru_cache(maxsize=1)
def calibration() -> dict[str, Any]:
    with open(Path(__file__).parent.parent / "catalog" / "overheads.yaml", encoding="utf-8") as fh:
        data: dict[str, Any] = yaml.safe_load(fh)
        return data


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
    quant_layout: QuantLayout | None = None    # a pre-quantised checkpoint's layout; None: the precision's default
    tensor_parallel: int | None = None         # a forced TP size (model entry tensor_parallel_size); None: free


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
    overhead_gib: float           # per GPU, inside the budget: activation peak + non-torch + CUDA graphs
    per_gpu_weights_gib: float
    per_gpu_kv_cache_gib: float
    per_gpu_required_gib: float   # weights + KV cache + overhead: what vLLM counts against the budget
    per_gpu_usable_gib: float     # gpu_memory_utilization x total
    kv_bytes_per_token: float     # whole model, unreplicated
    outside_budget_gib: float = 0.0   # per GPU: CUDA context and NCCL (the 1 - utilization headroom)
    per_gpu_total_gib: float = 0.0    # what CUDA reports
    activation_gib: float = 0.0
    non_torch_gib: float = 0.0
    cudagraph_gib: float = 0.0
    kv_cache_memory_bytes: int = 0    # per GPU, block-rounded: the --kv-cache-memory-bytes the plan passes
    min_margin_gib: float = 0.0       # memory that must stay free for what profiling cannot see

    @property
    def margin_gib(self) -> float:
        """Memory left free on each GPU once everything planned is allocated."""
        if not self.per_gpu_total_gib:
            return self.per_gpu_usable_gib - self.per_gpu_required_gib
        return self.per_gpu_total_gib - self.per_gpu_required_gib - self.outside_budget_gib

    @property
    def available_kv_gib(self) -> float:
        """What vLLM would give the KV cache itself at this utilization (its 'Available KV cache memory')."""
        return self.per_gpu_usable_gib - (self.per_gpu_required_gib - self.per_gpu_kv_cache_gib)

    @property
    def fits(self) -> bool:
        if self.per_gpu_required_gib > self.per_gpu_usable_gib:
            return False
        return not self.per_gpu_total_gib or self.margin_gib >= self.min_margin_gib


# ----------------------------------------------------------------------------- weights

def _fp8_scale_bytes(t: Tensor, q: QuantLayout | None) -> float:
    """fp32 scales of one FP8 linear: per tensor, per output channel, or per [rows, cols] block."""
    if q is not None and q.weight_block_size:
        bn, bk = q.weight_block_size
        return math.ceil(t.out_features / bn) * math.ceil(t.in_features / bk) * 4 * t.count
    if q is not None and q.scale_strategy == "channel":
        return t.out_features * 4 * t.count
    return 4 * t.count


def _tensor_bytes(t: Tensor, p: Precision, ggml_type: str | None, cat: Catalog, q: QuantLayout | None) -> float:
    if p.kind == "gguf":
        assert ggml_type is not None   # tensor_bytes gives every tensor of a GGUF precision its GGML type
        block, size = cat.ggml_bytes_per_block[ggml_type]
        return t.numel / block * size
    if p.kind == "float":
        assert p.bits is not None
        return t.numel * p.bits / 8
    head_quantized = q is not None and q.lm_head_quantized
    if t.role != "linear" or (t.name == "output" and not head_quantized):
        # 16-bit: embeddings, norms, biases, router, and the LM head (kept 16-bit by fp8/AWQ/GPTQ)
        return t.numel * 2
    if q is not None and q.keeps_16bit(module_names(t)):
        return t.numel * 2                        # the checkpoint left this module unquantized
    if p.kind == "fp8":
        return t.numel * 1 + _fp8_scale_bytes(t, q)
    # int4_group: AWQ / GPTQ. Groups run along the input dimension.
    group = (q.group_size if q is not None and q.group_size else p.group_size)
    group = t.in_features if group == -1 else group
    assert group is not None and p.bits is not None   # int4_group precisions give bits and group_size
    groups = math.ceil(t.in_features / group) * t.out_features * t.count
    return (t.numel * p.bits / 8 + groups * (p.scale_bits + p.zero_bits) / 8
            + t.in_features * t.count * p.index_bits / 8)


@lru_cache(maxsize=512)
def tensor_bytes(arch: Architecture, precision: str, quant: QuantLayout | None = None) -> tuple[float, ...]:
    """Bytes of every tensor of `tensors(arch)` stored in `precision` (refined by a checkpoint's layout)."""
    cat = catalog.load()
    p = cat.precisions[precision]
    ts = tensors(arch)
    types: Sequence[str | None] = [None] * len(ts)
    if p.kind == "gguf":
        assert p.default is not None   # catalog/quantization.yaml: every GGUF file type names its base GGML type
        types = gguf.tensor_types(arch, ts, precision, p.default,
                                  {k: v[0] for k, v in cat.ggml_bytes_per_block.items()})
    return tuple(_tensor_bytes(t, p, g, cat, quant) for t, g in zip(ts, types, strict=True))


@lru_cache(maxsize=512)
def weight_bytes(arch: Architecture, precision: str, quant: QuantLayout | None = None) -> float:
    return sum(tensor_bytes(arch, precision, quant))


_KV_PROJ = {"attn_k", "attn_v", "attn_k_bias", "attn_v_bias"}


@lru_cache(maxsize=4096)
def _per_rank_split(arch: Architecture, precision: str, tp: int,
                    quant: QuantLayout | None = None) -> tuple[tuple[float, ...], float, float]:
    """Per-TP-rank bytes: (per-layer list, bytes before the first layer, bytes after the last)."""
    kv = arch.kv_heads
    kv_share = math.ceil(kv / tp) / kv   # with TP > KV heads, each rank keeps a whole replicated head
    layers = [0.0] * arch.num_hidden_layers
    head = tail = 0.0
    for t, b in zip(tensors(arch), tensor_bytes(arch, precision, quant), strict=True):
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
    """One token's K and V in one layer, on one TP rank, as vLLM's attention backends page them.

    Standard attention: K and V of this rank's KV heads (a rank keeps a whole head when TP > KV heads).
    MLA (DeepSeek-V2/V3): vLLM's MLA backends cache one compressed latent per token and layer,
    kv_lora_rank + qk_rope_head_dim elements (576 for DeepSeek-V3), with no separate V, replicated on
    every TP rank (vllm/v1/attention/backends/mla: MLACommonBackend.get_kv_cache_shape is
    (num_blocks, block_size, head_size) with head_size = kv_lora_rank + qk_rope_head_dim)."""
    if arch.task == "embed":
        return 0.0                      # encoder-only: attention over the input, no cache kept
    if arch.is_mla:
        assert arch.kv_lora_rank is not None and arch.qk_rope_head_dim is not None   # is_mla: Architecture._consistent
        latent = (arch.kv_lora_rank + arch.qk_rope_head_dim) * dtype_bytes
        if arch.index_head_dim is None:
            return latent
        # DeepSeek sparse attention (V3.2): an fp8 cache uses vLLM's fp8_ds_mla page layout (the latent in fp8
        # with one fp32 scale per 128 values, the rope part kept in bf16: 656 bytes for DeepSeek-V3.2), and
        # the lightning indexer keeps an fp8 key plus an fp32 scale per token and layer
        if dtype_bytes == 1:
            latent = arch.kv_lora_rank + arch.kv_lora_rank // 128 * 4 + arch.qk_rope_head_dim * 2
        return latent + arch.index_head_dim + 4
    return 2 * math.ceil(arch.kv_heads / tp) * arch.head_size * dtype_bytes


def block_size(arch: Architecture) -> int:
    """Tokens per KV page: vLLM's default 16, 64 for the MLA backends (FlashMLA needs 64-token pages)."""
    c: dict[str, int] = calibration()["vllm"]
    return c["mla_block_size"] if arch.is_mla else c["block_size"]


def sequence_tokens(arch: Architecture, max_model_len: int, runtime: str = "vllm") -> int:
    """KV slots one full-length sequence occupies: whole pages (vLLM/TGI) or exactly max_model_len (Ollama).

    Rounded to whole pages of the largest size a vLLM attention backend may pick (page_align_tokens: 256,
    e.g. DeepSeek's sparse backend; 16 by default, 64 for FlashMLA, 128 for CUTLASS MLA): the pool passed as
    --kv-cache-memory-bytes then holds `concurrency` sequences whichever backend vLLM selects."""
    if runtime == "ollama":
        return max_model_len
    b: int = max(block_size(arch), calibration()["vllm"]["page_align_tokens"])
    return math.ceil(max_model_len / b) * b


def kv_tokens_per_layer(arch: Architecture, max_model_len: int, max_num_batched_tokens: int,
                        runtime: str = "vllm") -> float:
    """KV slots one full-length sequence occupies in an average layer.

    A full-attention layer keeps the whole context (sequence_tokens). A sliding-window layer keeps what
    vLLM's hybrid KV cache manager allocates for it (vllm/v1/kv_cache_interface.py,
    SlidingWindowSpec.max_memory_usage_bytes): the last sliding_window - 1 tokens plus one prefill chunk,
    at most max_model_len, in whole pages plus one (the window need not start on a page boundary), and
    never more than a full layer."""
    full_tokens = sequence_tokens(arch, max_model_len, runtime)
    sliding = arch.sliding_window_layers
    if not sliding or arch.sliding_window is None:
        return float(full_tokens)
    tokens = min(arch.sliding_window - 1 + max_num_batched_tokens, max_model_len)
    b = 1 if runtime == "ollama" else block_size(arch)
    kept = min((math.ceil(tokens / b) + (0 if runtime == "ollama" else 1)) * b, full_tokens)
    full = arch.num_hidden_layers - sliding
    return (full * full_tokens + sliding * kept) / arch.num_hidden_layers


def attended_tokens_per_layer(arch: Architecture, context: int) -> float:
    """Cached tokens an average layer reads for one new token: a sliding-window layer only its window."""
    if not arch.sliding_window_layers or arch.sliding_window is None:
        return float(context)
    full = arch.num_hidden_layers - arch.sliding_window_layers
    return (full * context + arch.sliding_window_layers * min(context, arch.sliding_window)) / arch.num_hidden_layers


# ----------------------------------------------------------------------------- overheads

def _activation_bytes(arch: Architecture, w: Workload, tp: int, c: dict[str, float]) -> float:
    """Peak of vLLM's profile run (gpu_model_runner.profile_run): a dummy forward pass over
    max_num_batched_tokens tokens, then the sampler over min(max_num_seqs, max_num_batched_tokens) rows.

    Forward, per token (2-byte activations): `residual_copies` hidden-size buffers (residual, normed
    input, layer output) + the widest intermediate of one layer on this rank: the QKV projection, the
    gated MLP's gate+up output and its activation, or a MoE layer's fused_moe caches
    (intermediate_cache1 [M, top_k, 2N/TP], cache2 [M x top_k, N/TP], cache3 [M, top_k, hidden]) plus
    its shared experts; MLA prefill also materialises per-head K and V from the latent.
    Sampler: fp32 logits over the vocabulary per row, `sampler_copies` times (logits, probabilities,
    the sorted copy of the top-k/top-p path)."""
    h = arch.hidden_size
    tokens = w.max_num_batched_tokens
    if arch.is_mla:
        assert (arch.qk_nope_head_dim is not None and arch.qk_rope_head_dim is not None
                and arch.v_head_dim is not None)   # is_mla: Architecture._consistent
        heads = arch.num_attention_heads / tp
        attn = heads * (2 * (arch.qk_nope_head_dim + arch.qk_rope_head_dim) + arch.v_head_dim)
    else:
        attn = (arch.num_attention_heads + 2 * arch.kv_heads) * arch.head_size / tp
    per_mlp = 3 if arch.mlp == "gated" else 2      # gate+up output and the activation, or fc1 and activation
    dense = per_mlp * arch.intermediate_size / tp if (not arch.is_moe or arch.first_dense_layers) else 0.0
    moe = 0.0
    if arch.is_moe:
        k, n = arch.num_experts_per_tok, arch.expert_intermediate
        assert k is not None   # is_moe: Architecture._consistent
        moe = k * (3 * n / tp + h) + per_mlp * n * arch.num_shared_experts / tp
    forward = tokens * 2 * (c["residual_copies"] * h + max(attn, dense, moe))
    rows = min(w.concurrency, w.max_num_batched_tokens)
    sampler = 0.0 if arch.task == "embed" else rows * arch.vocab_size * 4 * c["sampler_copies"]
    return max(forward, sampler)


@dataclass(frozen=True)
class _VllmOverhead:
    activation: float       # GiB, inside the budget
    non_torch: float        # GiB, inside the budget
    outside: float          # GiB: CUDA context + NCCL, before vLLM's baseline snapshot
    cudagraph: float        # GiB, inside the budget (vLLM >= 0.21 profiles it)


def _vllm_overhead(arch: Architecture, w: Workload, layout: Layout, stage_layers: int) -> _VllmOverhead:
    c = calibration()["vllm"]
    ranks = layout.tensor_parallel * layout.pipeline_parallel
    multi = ranks > 1
    comm = c["comm_base_gib"] + c["comm_per_rank_gib"] * layout.tensor_parallel if multi else 0.0
    # graphs are captured for batch sizes up to max_cudagraph_capture_size = min(2 x max_num_seqs, 512); the
    # fitted per-layer term is for the full 512 and shrinks with it, to a floor for the many small graphs
    capture = max(c["cudagraph_min_fraction"], min(1.0, 2 * w.concurrency / 512))
    graphs = (c["cudagraph_base_gib"] + c["cudagraph_per_layer_gib"] * stage_layers * capture
              + c["cudagraph_per_extra_rank_gib"] * (layout.tensor_parallel - 1))
    act = _activation_bytes(arch, w, layout.tensor_parallel, c) / GIB
    non_torch = c["non_torch_gib"] + (c["non_torch_multi_gpu_gib"] if multi else 0.0)
    # since vLLM 0.21 the profile run also estimates CUDA-graph memory and counts it inside the budget
    # (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS, on by default); the context and NCCL stay outside
    return _VllmOverhead(act, non_torch, c["cuda_context_gib"] + comm, graphs)


def _ollama_graph_bytes(arch: Architecture, w: Workload, split: bool) -> float:
    c: dict[str, int] = calibration()["ollama"]
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
    layers, head, tail = _per_rank_split(arch, w.precision, tp, w.quant_layout)
    stage_bytes, stage_layers = _heaviest_stage(layers, layout.stages)
    kv_dtype = cat.kv_dtypes[w.kv_cache_dtype].bytes
    kv_layer_token = kv_bytes_per_token_per_layer(arch, kv_dtype, tp)
    pool_tokens = kv_tokens_per_layer(arch, w.max_model_len, w.max_num_batched_tokens, w.runtime) * w.concurrency
    outside = act = non_torch = graphs = margin = 0.0
    if w.runtime == "ollama":
        # llama.cpp keeps token_embd in host memory; the output head sits on the last GPU.
        weights = stage_bytes + tail
        overhead = (calibration()["ollama"]["minimum_mib"] * 2 ** 20
                    + _ollama_graph_bytes(arch, w, layout.layer_split > 1) + max(layers)) / GIB
        total = 0.0
    else:
        weights = stage_bytes + (max(head, tail) if layout.stages > 1 else head + tail)
        o = _vllm_overhead(arch, w, layout, stage_layers)
        act, non_torch, graphs, outside = o.activation, o.non_torch, o.cudagraph, o.outside
        overhead = act + non_torch + graphs
        total = gpu_total_gib
        margin = calibration()["vllm"]["min_margin_gib"]
    kv = pool_tokens * kv_layer_token * stage_layers
    required = (weights + kv) / GIB + overhead
    total_weights = weight_bytes(arch, w.precision, w.quant_layout)
    return Memory(
        weights_gib=total_weights / GIB,
        kv_cache_gib=pool_tokens * kv_layer_token * arch.num_hidden_layers * tp / GIB,
        overhead_gib=overhead,
        per_gpu_weights_gib=weights / GIB,
        per_gpu_kv_cache_gib=kv / GIB,
        per_gpu_required_gib=required,
        per_gpu_usable_gib=gpu_total_gib * w.gpu_memory_utilization,
        kv_bytes_per_token=kv_bytes_per_token_per_layer(arch, kv_dtype) * arch.num_hidden_layers,
        outside_budget_gib=outside, per_gpu_total_gib=total, activation_gib=act, non_torch_gib=non_torch,
        cudagraph_gib=graphs, kv_cache_memory_bytes=int(math.ceil(kv)), min_margin_gib=margin,
    )


def kv_capacity_sequences(arch: Architecture, w: Workload, layout: Layout, gpu_total_gib: float, cat: Catalog) -> float:
    """Full-length sequences the KV cache vLLM would allocate itself holds (its 'Maximum concurrency for
    N tokens per request'), fractional; negative when not even the fixed overheads fit."""
    m = estimate(arch, w, layout, gpu_total_gib, cat)
    per_seq = m.per_gpu_kv_cache_gib / w.concurrency
    return m.available_kv_gib / per_seq if per_seq else math.inf


def max_sequences(arch: Architecture, w: Workload, layout: Layout, gpu_total_gib: float, cat: Catalog) -> int:
    """Sequences of max_model_len the layout could hold at once (0 if even one does not fit)."""
    lo, hi = 0, 1
    probe: Callable[[int], bool] = lambda n: estimate(arch, _with(w, concurrency=n), layout, gpu_total_gib, cat).fits  # noqa: E731
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
    probe: Callable[[int], bool] = lambda n: estimate(arch, _with(w, max_model_len=n), layout, gpu_total_gib, cat).fits  # noqa: E731
    lo, hi = 0, max(1, w.max_model_len // 256)
    if not probe(256):
        return 0
    lo = 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if probe(mid * 256) else (lo, mid)
    return lo * 256


def _with(w: Workload, **changes: Any) -> Workload:
    return Workload(**{**w.__dict__, **changes})

"""How fast a replica answers, from the physics of the model and the GPU: a roofline per engine step.

Decode (one new token for each of `batch` sequences, each with `context` tokens behind it):

    step = max(memory, compute) + all-reduce + overhead
    memory  = (weight bytes read per GPU + KV bytes read per GPU) / (bandwidth x memory_fraction)
    compute = (2 x active linear parameters per GPU x batch + attention FLOPs) / (TFLOPS x compute_fraction)

  * Weight bytes are the format's real bytes (sizing/memory.py: FP8 1 byte, AWQ/GPTQ 4 bits + group
    scales, GGUF block layouts), so a quantized model reads fewer bytes per step. Embedding tables are
    looked up, not streamed, and are not counted; the LM head is (a tied head reads the embedding).
  * KV bytes are `batch x context` tokens of this rank's KV heads in the cache dtype, so an FP8 KV
    cache reads half as many.
  * A mixture of experts reads only the experts its tokens are routed to: with E experts and k per
    token, a batch of B tokens touches E x (1 - (1 - k/E)^B) of them per layer in expectation (k/E of
    the expert bytes at batch 1, all of them at large batch). Shared experts and attention are read
    every step. FLOPs always count k experts per token.
  * Tensor parallelism divides sharded bytes and FLOPs by TP (replicated tensors and replicated KV
    heads are read by every rank) and adds two all-reduces per layer of `tokens x hidden x 2` bytes:
    latency + 2 (TP-1)/TP x bytes / (link x fraction), over NVLink or PCIe per the instance catalog.
  * Pipeline stages (eks across nodes, Ollama's layer split across GPUs) run one after another for a
    token: they add memory to hold more, not speed; each boundary adds a hand-off. Conservative: no
    micro-batch overlap between stages is assumed.

Prefill (one chunk of `tokens` new prompt tokens after `context` cached ones):

    chunk = max(FLOPs / (TFLOPS x compute_fraction), weight bytes / (bandwidth x memory_fraction))
            + all-reduce + overhead
    FLOPs = 2 x active linear parameters (no LM head: logits only for the last token) x tokens
            + attention 2 x layers x heads x (qk + v head dim) x tokens x (context + tokens / 2)

  * Linear layers run at the FP8 tensor rate when the weights are FP8 and the GPU has FP8 tensor cores
    (compute capability >= 8.9, vLLM's W8A8); every other format at the 16-bit rate (AWQ/GPTQ Marlin
    kernels are W4A16; GGUF dequantizes). Attention runs at the 16-bit rate.

The fractions and communication costs are calibrated and cited in catalog/performance.yaml; the
model is checked against held-out published measurements in tests/test_performance.py. Pure: no
Pulumi, no I/O beyond the catalog.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from llm_platform.catalog import Catalog, Gpu, InstanceType
from llm_platform.catalog.architecture import Architecture
from llm_platform.catalog.checkpoint import QuantLayout

from .memory import Layout, attended_tokens_per_layer, kv_bytes_per_token_per_layer, tensor_bytes
from .params import tensors

_LOOKUP = {"token_embd", "position_embd", "token_types"}   # gathered rows, not streamed
_KV_PROJ = {"attn_k", "attn_v", "attn_k_bias", "attn_v_bias"}
ACT_BYTES = 2                                             # activations exchanged in 16 bit


@dataclass(frozen=True)
class Hardware:
    """What one replica runs on: the GPU model, how its GPUs talk to each other, and the calibration."""
    gpu: Gpu
    link: str                      # "nvlink", "pcie" or "none" (single GPU)
    link_gbps: float               # one direction, per GPU
    memory_fraction: float
    compute_fraction: float
    step_overhead_s: float
    allreduce_latency_s: float
    allreduce_fraction: float
    pipeline_hop_s: float
    per_sequence_s: float = 0.0      # per decoding sequence per step: scheduling, input prep, sampling
    decode_compute_fraction: float = 0.0  # tensor-core fraction decode GEMMs (batch rows) reach; 0: compute_fraction
    attention_fraction: float = 0.0  # bandwidth fraction reached reading the paged KV cache (0: memory_fraction)
    attention_half_context: float = 0.0  # context at which paged attention reaches half that fraction

    def with_bandwidth(self, gbps: float) -> Hardware:
        return Hardware(**{**self.__dict__, "gpu": self.gpu.model_copy(update={"memory_bandwidth_gbps": gbps})})


def hardware_of(instance: InstanceType, cat: Catalog) -> Hardware:
    """The GPU of an instance type and its GPU-to-GPU path, parsed from the catalog's `interconnect`
    column: 'NVSwitch 900 GB/s' (bidirectional per GPU; half each way) or 'PCIe' (the GPU's x16 link)."""
    gpu = cat.gpu_of(instance)
    c = cat.performance
    assert c is not None   # catalog.load() always reads catalog/performance.yaml
    text = instance.interconnect or ""
    m = re.search(r"([\d.]+)\s*GB/s", text)
    if "NV" in text and m:
        link, gbps, comm = "nvlink", float(m.group(1)) / 2, c.nvlink
    elif "PCIe" in text or instance.gpu_count > 1:
        link, gbps, comm = "pcie", gpu.pcie_gbps or 15.75, c.pcie
    else:
        link, gbps, comm = "none", 0.0, c.pcie
    return Hardware(gpu=gpu, link=link, link_gbps=gbps, memory_fraction=c.memory_fraction,
                    compute_fraction=c.compute_fraction, step_overhead_s=c.step_overhead_ms / 1e3,
                    allreduce_latency_s=comm.latency_us / 1e6, allreduce_fraction=comm.bandwidth_fraction,
                    pipeline_hop_s=c.pipeline_hop_us / 1e6, per_sequence_s=c.per_sequence_us / 1e6,
                    attention_fraction=c.attention_fraction or c.memory_fraction,
                    attention_half_context=c.attention_half_context,
                    decode_compute_fraction=c.decode_compute_fraction or c.compute_fraction)


# ----------------------------------------------------------------------------- what a step touches

@dataclass(frozen=True)
class _Shape:
    dense_bytes: float        # per TP rank, whole model: attention, dense MLPs, shared experts, norms, LM head
    expert_bytes: float       # per TP rank, whole model: routed experts (all of them)
    head_bytes: float         # per TP rank: the LM head (read in decode, not needed in prefill)
    decode_params: float      # active linear parameters per token, per rank, LM head included
    prefill_params: float     # the same without the LM head
    head_params: float


@lru_cache(maxsize=1024)
def _shape(arch: Architecture, precision: str, tp: int, quant: QuantLayout | None = None) -> _Shape:
    kv_share = math.ceil(arch.kv_heads / tp) / arch.kv_heads
    dense = expert = head = 0.0
    decode_params = head_params = 0.0
    k_over_e = ((arch.num_experts_per_tok / arch.num_experts)   # is_moe (Architecture._consistent: both or neither)
                if arch.num_experts_per_tok is not None and arch.num_experts is not None else 1.0)
    for t, b in zip(tensors(arch), tensor_bytes(arch, precision, quant), strict=True):
        share = 1.0 if not t.sharded else (kv_share if t.name in _KV_PROJ and not arch.is_mla else 1.0 / tp)
        is_head = t.name == "output" or (t.name == "token_embd" and arch.tie_word_embeddings
                                         and arch.task == "generate")
        if t.name in _LOOKUP and not is_head:
            continue
        if t.count > 1 and arch.is_moe:
            expert += b * share
            decode_params += t.numel * k_over_e * share
        else:
            dense += b * share
            if t.role != "vector":
                decode_params += t.numel * share
        if is_head:
            head += b * share
            head_params += t.numel * share
    return _Shape(dense, expert, head, decode_params, decode_params - head_params, head_params)


def experts_touched(arch: Architecture, tokens: int) -> float:
    """Expected fraction of routed experts a batch of `tokens` tokens reads in one layer."""
    if not arch.is_moe:
        return 1.0
    k, e = arch.num_experts_per_tok, arch.num_experts
    assert k is not None and e is not None   # is_moe: Architecture._consistent
    return 1.0 - (1.0 - k / e) ** max(tokens, 1)


def _attention_width(arch: Architecture, tp: int) -> float:
    """Query heads x (QK dim + V dim) on one rank: the per-token, per-context-token attention FLOPs / 2."""
    heads = arch.num_attention_heads / tp
    if arch.is_mla:
        assert (arch.qk_nope_head_dim is not None and arch.qk_rope_head_dim is not None
                and arch.v_head_dim is not None)   # is_mla: Architecture._consistent
        return heads * (arch.qk_nope_head_dim + arch.qk_rope_head_dim + arch.v_head_dim)
    return heads * 2 * arch.head_size


def _linear_tflops(gpu: Gpu, precision: str) -> float:
    if precision == "fp8" and gpu.compute_capability >= 8.9 and gpu.fp8_dense_tflops:
        return gpu.fp8_dense_tflops
    assert gpu.tensor_16bit_tflops is not None   # tests/test_performance.py: every catalog GPU states it
    return gpu.tensor_16bit_tflops


def _allreduce(hw: Hardware, layout: Layout, arch: Architecture, tokens: int) -> float:
    tp = layout.tensor_parallel
    if tp <= 1:
        return 0.0
    size = tokens * arch.hidden_size * ACT_BYTES
    one = hw.allreduce_latency_s + 2 * (tp - 1) / tp * size / (hw.link_gbps * 1e9 * hw.allreduce_fraction)
    return 2 * arch.num_hidden_layers * one


def _hops(hw: Hardware, layout: Layout) -> float:
    return (layout.stages - 1) * hw.pipeline_hop_s


# ----------------------------------------------------------------------------- decode and prefill

@dataclass(frozen=True)
class Step:
    seconds: float
    memory_s: float
    compute_s: float
    comm_s: float
    overhead_s: float

    @property
    def bound(self) -> str:
        return "memory" if self.memory_s >= self.compute_s else "compute"


def decode_step(arch: Architecture, precision: str, kv_dtype_bytes: float, layout: Layout, hw: Hardware,
                batch: int, context: int, quant: QuantLayout | None = None) -> Step:
    """One decode step: `batch` sequences each emit a token with `context` tokens already cached."""
    if arch.task != "generate":
        raise ValueError("encoder-only models do not decode")
    tp = layout.tensor_parallel
    s = _shape(arch, precision, tp, quant)
    weights = s.dense_bytes + s.expert_bytes * experts_touched(arch, batch)
    attended = attended_tokens_per_layer(arch, context)     # a sliding-window layer reads only its window
    kv = batch * attended * kv_bytes_per_token_per_layer(arch, kv_dtype_bytes, tp) * arch.num_hidden_layers
    gpu = hw.gpu
    # tests/test_performance.py: every catalog GPU states its bandwidth and 16-bit tensor throughput
    assert gpu.memory_bandwidth_gbps is not None and gpu.tensor_16bit_tflops is not None
    bw = gpu.memory_bandwidth_gbps * 1e9
    # paged attention streams each sequence's KV pages; short contexts are a few pages per sequence and
    # leave the kernel latency-bound, long ones approach its large-read fraction
    kv_fraction = (hw.attention_fraction or hw.memory_fraction) * context / (context + hw.attention_half_context) \
        if context else (hw.attention_fraction or hw.memory_fraction)
    memory = weights / (bw * hw.memory_fraction) + kv / (bw * kv_fraction)
    linear_flops = 2 * s.decode_params * batch
    attn_flops = 2 * arch.num_hidden_layers * _attention_width(arch, tp) * batch * attended
    # decode GEMMs are skinny (`batch` rows against the whole weight): they reach less of the tensor-core
    # peak than a prefill chunk's
    gemm_eff = hw.decode_compute_fraction or hw.compute_fraction
    compute = (linear_flops / (_linear_tflops(gpu, precision) * 1e12)
               + attn_flops / (gpu.tensor_16bit_tflops * 1e12)) / gemm_eff
    comm = _allreduce(hw, layout, arch, batch) + _hops(hw, layout)
    # per-step costs that grow with the batch: the scheduler, input preparation and the sampler work per
    # sequence on the host and in small kernels that no bandwidth removes
    overhead = hw.step_overhead_s + hw.per_sequence_s * batch
    return Step(max(memory, compute) + comm + overhead, memory, compute, comm, overhead)


def prefill_chunk(arch: Architecture, precision: str, layout: Layout, hw: Hardware, tokens: int,
                  context: int = 0, quant: QuantLayout | None = None) -> Step:
    """One prefill chunk of `tokens` prompt tokens after `context` cached ones (0: a fresh prompt).
    Encoders attend both ways, so their attention costs the full tokens^2, not half."""
    tp = layout.tensor_parallel
    s = _shape(arch, precision, tp, quant)
    gpu = hw.gpu
    assert gpu.memory_bandwidth_gbps is not None and gpu.tensor_16bit_tflops is not None   # as in decode_step
    params = s.prefill_params if arch.task == "generate" else s.decode_params
    span = context + (tokens / 2 if arch.task == "generate" else tokens)
    linear_flops = 2 * params * tokens + (2 * s.head_params if arch.task == "generate" else 0.0)
    attn_flops = 2 * arch.num_hidden_layers * _attention_width(arch, tp) * tokens * span
    compute = (linear_flops / (_linear_tflops(gpu, precision) * 1e12)
               + attn_flops / (gpu.tensor_16bit_tflops * 1e12)) / hw.compute_fraction
    weights = s.dense_bytes + s.expert_bytes * experts_touched(arch, tokens)
    memory = weights / (gpu.memory_bandwidth_gbps * 1e9 * hw.memory_fraction)
    comm = _allreduce(hw, layout, arch, tokens) + _hops(hw, layout)
    return Step(max(memory, compute) + comm + hw.step_overhead_s, memory, compute, comm, hw.step_overhead_s)


def prefill_seconds(arch: Architecture, precision: str, layout: Layout, hw: Hardware, prompt: int,
                    chunk: int, quant: QuantLayout | None = None) -> float:
    """A whole prompt, in chunks of at most `chunk` tokens, each attending to the chunks before it."""
    total, done = 0.0, 0
    while done < prompt:
        n = min(chunk, prompt - done)
        total += prefill_chunk(arch, precision, layout, hw, n, done, quant).seconds
        done += n
    return total


# ----------------------------------------------------------------------------- serving a load

@dataclass(frozen=True)
class Rates:
    """Throughput of one replica with no load stated (the throughput object's load-free half)."""
    decode_tokens_per_s_single: float | None   # one sequence at max_model_len context
    decode_tokens_per_s_full: float | None     # `concurrency` sequences at max_model_len, aggregate
    prefill_tokens_per_s: float                   # one chunk: min(max_num_batched_tokens, max_model_len) tokens
                                                  # of one fresh prompt


def rates(arch: Architecture, precision: str, kv_dtype_bytes: float, layout: Layout, hw: Hardware,
          max_model_len: int, concurrency: int, chunk: int, quant: QuantLayout | None = None) -> Rates:
    tokens = min(chunk, max_model_len) if arch.task == "generate" else chunk
    prefill = tokens / prefill_chunk(arch, precision, layout, hw, tokens, quant=quant).seconds
    if arch.task != "generate":
        return Rates(None, None, prefill)
    single = 1 / decode_step(arch, precision, kv_dtype_bytes, layout, hw, 1, max_model_len, quant).seconds
    full = concurrency / decode_step(arch, precision, kv_dtype_bytes, layout, hw, concurrency, max_model_len,
                                     quant).seconds
    return Rates(single, full, prefill)


@dataclass(frozen=True)
class Operating:
    """One replica serving a stated load at a given decode batch, at `utilization` of what it can carry."""
    batch: int                       # sequences decoding together
    requests_per_s: float            # what one replica carries at that batch and utilization
    tpot_s: float | None          # time per output token, prefill stalls included
    ttft_s: float                    # prompt prefill + joining the running batch
    step_s: float | None


def operating_point(arch: Architecture, precision: str, kv_dtype_bytes: float, layout: Layout, hw: Hardware,
                    batch: int, prompt: int, output: int | None, chunk: int, utilization: float,
                    quant: QuantLayout | None = None) -> Operating:
    """Steady state of one replica running `batch` sequences, each with `prompt` + `output` tokens.

    Per request the replica spends t_prefill on its prompt and `output` decode steps of t_step shared
    by `batch` sequences; chunked prefill slots prompts between decode steps, stalling them. Little's
    law gives the request rate the replica sustains, and the share of time prefill takes (rho) stretches
    every token: TPOT = t_step / (1 - rho). TTFT is the prompt's prefill plus one step to join the
    batch. `utilization` (< 1) keeps headroom so tail latencies stay near these steady-state values.
    Embedders: a request is one prefill; concurrency batches prompts into chunks."""
    if arch.task != "generate":
        per_chunk = max(1, chunk // max(prompt, 1))
        t = prefill_chunk(arch, precision, layout, hw, per_chunk * prompt, quant=quant).seconds
        return Operating(per_chunk, utilization * per_chunk / t, None,
                         prefill_chunk(arch, precision, layout, hw, prompt, quant=quant).seconds, None)
    assert output is not None   # a generating model's load states its output tokens
    t_prefill = prefill_seconds(arch, precision, layout, hw, prompt, chunk, quant)
    t_step = decode_step(arch, precision, kv_dtype_bytes, layout, hw, batch, prompt + output // 2, quant).seconds
    capacity = batch / (output * t_step + batch * t_prefill)          # requests/s at 100 %
    rho = utilization * capacity * t_prefill
    tpot = t_step / (1 - rho)
    return Operating(batch, utilization * capacity, tpot, t_prefill + t_step, t_step)


def best_operating_point(arch: Architecture, precision: str, kv_dtype_bytes: float, layout: Layout, hw: Hardware,
                         max_batch: int, prompt: int, output: int | None, chunk: int, utilization: float,
                         ttft_target: float | None, tpot_target: float | None,
                         quant: QuantLayout | None = None) -> Operating | None:
    """The largest batch (most requests per replica) that meets both latency targets, or None.

    TPOT grows with the batch; aggregate throughput does too, so the answer is the largest batch
    whose TPOT and TTFT are within target, found by bisection over 1..max_batch."""
    def ok(op: Operating) -> bool:
        return ((tpot_target is None or op.tpot_s is None or op.tpot_s <= tpot_target)
                and (ttft_target is None or op.ttft_s <= ttft_target))

    point: Callable[[int], Operating] = lambda b: operating_point(  # noqa: E731
        arch, precision, kv_dtype_bytes, layout, hw, b, prompt, output, chunk, utilization, quant)
    if arch.task != "generate":
        op = point(1)
        return op if ok(op) else None
    if not ok(point(1)):
        return None
    lo, hi = 1, max_batch
    if ok(point(hi)):
        return point(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(point(mid)) else (lo, mid)
    return point(lo)

"""From a model entry to a DeploymentPlan: which instance, how many GPUs, TP x PP, KV dtype, concurrency,
replicas, memory, cost, and why.

The rule: on ec2 one instance serves one replica. Per model the planner searches instance type, tensor-
parallel size, KV-cache dtype, concurrency (vLLM --max-num-seqs) and replicas together (`explore`) and keeps
the cheapest option that fits in memory and, with a `load`, meets its latency targets (`choose`):
- without a load, cost is replicas x price: the cheapest on-demand type on which some allowed TP fits
  (ties: fewer GPUs), at the largest TP that fits (the GPUs are paid for; more TP, more KV room and bandwidth);
- with a load, on every type a replica fits it takes the largest decode batch that meets the targets
  (sizing/performance.py), the replicas that carry the load at TARGET_UTILIZATION (never below the HA
  minimum, 2 in prod; autoscaling up to BURST_FACTOR x the load), and the cheapest fleet wins.
What the planner may choose on its own and what it only advises is the policy in "the choice space" below.
Every plan names the runner-up, the three cheapest options (one per type) and the cheaper options that need
one config change. Pipeline parallelism spans nodes only on eks, only when no single node can hold a
replica. A forced instance_type is checked, not trusted. When nothing fits, the error says what would, in
numbers. On docker the models share the workstation's GPUs (share_local_gpus).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypedDict

from llm_platform import catalog
from llm_platform.catalog import Catalog, InstanceType
from llm_platform.catalog.architecture import Architecture
from llm_platform.settings.errors import ConfigError
from llm_platform.settings.schema import ModelSpec, StackConfig

from . import performance as perf
from .memory import (
    GIB,
    Layout,
    Memory,
    Workload,
    estimate,
    kv_bytes_per_token_per_layer,
    max_context,
    max_sequences,
    weight_bytes,
)
from .params import active_parameter_count, parameter_count

if TYPE_CHECKING:       # sizing/fallbacks.py and startup.py build on this module
    from .fallbacks import Fallback
    from .startup import StartupEstimate

HOURS_PER_MONTH = 730
# A node's disk: the OS image (the Deep Learning Base AMI's root snapshot with CUDA, drivers and the
# container toolkit, plus images and compile caches) and twice the weights (download + verified copy).
ROOT_VOLUME_GIB = 150
MAX_NODES = 8          # pipeline stages across nodes on eks
# Startup time model for health-check grace periods: download from the model store, verify
# every file's SHA-256, load into GPU memory, then compile and capture CUDA graphs.
DOWNLOAD_GIB_PER_S = 0.45    # S3 through the gateway endpoint onto gp3 at 500 MiB/s provisioned
VERIFY_GIB_PER_S = 1.0       # sha256sum on one core
LOAD_GIB_PER_S = 2.0         # safetensors from local disk to GPU
WARMUP_S = 180               # profile run, torch.compile, CUDA graph capture
# Capacity planning policy (not facts): replicas carry the stated load at 80 % of what they can, which
# keeps queueing, and so p99 latencies, near the steady-state estimate; autoscaling may add replicas up
# to twice the stated load.
TARGET_UTILIZATION = 0.8
BURST_FACTOR = 2.0


class ThroughputDict(TypedDict):
    """Throughput.as_dict: the `throughput` object of plan.py --json."""
    decode_tokens_per_s_single: float | None
    decode_tokens_per_s_full: float | None
    prefill_tokens_per_s: float | None
    ttft_seconds: float | None
    tpot_seconds: float | None
    batch_for_load: int | None
    requests_per_s_per_replica: float | None
    replicas_for_load: int | None
    usd_per_million_output_tokens: float | None


class OptionDict(TypedDict):
    """Option.as_dict: one entry of a plan's `alternatives` and `advice`, and the choice's `runner_up`."""
    instance_type: str
    precision: str
    kv_cache_dtype: str
    tensor_parallel_size: int
    pipeline_parallel_size: int
    concurrency: int
    replicas: int
    replicas_for_load: int | None
    hourly_cost_per_replica_usd: float
    monthly_cost_usd: float
    usd_per_million_output_tokens: float | None
    tpot_seconds: float | None
    change: str | None


class ChoiceDict(TypedDict):
    """DeploymentPlan.choice: how the planner chose (see plan_model)."""
    reason: str
    concurrency: str              # stated | chosen | default
    kv_cache_dtype: str           # stated | chosen | default
    replicas: str                 # stated | load | default
    runner_up: OptionDict | None


def _round(x: float | None, n: int) -> float | None:
    return None if x is None else round(x, n)


@dataclass(frozen=True)
class Throughput:
    """The `throughput` object of a deployment (plan.py --json). Load-dependent fields are None
    without a `load`; decode fields are None for embedders (they prefill only)."""
    decode_tokens_per_s_single: float | None
    decode_tokens_per_s_full: float | None
    prefill_tokens_per_s: float
    ttft_seconds: float | None = None
    tpot_seconds: float | None = None
    batch_for_load: int | None = None
    requests_per_s_per_replica: float | None = None
    replicas_for_load: int | None = None
    usd_per_million_output_tokens: float | None = None

    def as_dict(self) -> ThroughputDict:
        r = _round
        return {"decode_tokens_per_s_single": r(self.decode_tokens_per_s_single, 1),
                "decode_tokens_per_s_full": r(self.decode_tokens_per_s_full, 1),
                "prefill_tokens_per_s": r(self.prefill_tokens_per_s, 0),
                "ttft_seconds": r(self.ttft_seconds, 3), "tpot_seconds": r(self.tpot_seconds, 4),
                "batch_for_load": self.batch_for_load,
                "requests_per_s_per_replica": r(self.requests_per_s_per_replica, 3),
                "replicas_for_load": self.replicas_for_load,
                "usd_per_million_output_tokens": r(self.usd_per_million_output_tokens, 3)}


@dataclass(frozen=True)
class DeploymentPlan:
    name: str
    model: str
    task: str
    runtime: str
    precision: str
    kv_cache_dtype: str
    instance_type: str
    gpu_name: str
    gpu_count: int                  # GPUs on one instance
    gpu_memory_gib: float           # one GPU, as CUDA reports it
    nodes_per_replica: int
    replicas_min: int
    replicas_max: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    gpus_per_replica: int
    max_model_len: int
    concurrency: int
    max_num_batched_tokens: int
    gpu_memory_utilization: float
    memory: Memory
    max_concurrency_at_full_context: int | None   # None for embedders: they keep no KV cache
    parameters: int
    active_parameters: int
    hourly_cost_usd: float          # one replica (all its nodes)
    volume_gib: int                 # root + model volume per node: weights, a staging copy, logs
    startup_seconds: int            # boot to healthy, for health-check grace periods
    trust_remote_code: bool
    revision: str | None
    notes: tuple[str, ...] = field(default_factory=tuple)
    throughput: Throughput | None = None
    # how the planner chose (reason, what was stated or chosen, the runner-up), the three cheapest options,
    # cheaper options one config change away, and what a prod reviewer checks: provenance and the manifest digest
    choice: ChoiceDict | None = None
    alternatives: tuple[OptionDict, ...] = ()
    advice: tuple[OptionDict, ...] = ()
    provenance: dict[str, Any] | None = None
    checksums_sha256: str | None = None
    # capacity (sizing/fallbacks.py): checked alternatives in price order, or why there are none; start times
    fallbacks: tuple[Fallback, ...] = field(default_factory=tuple)
    fallbacks_reason: str | None = None
    startup: StartupEstimate | None = None

    @property
    def kv_cache_memory_bytes(self) -> int:
        """Per GPU: the KV pool the plan sized, passed to vLLM as --kv-cache-memory-bytes (0 for embedders)."""
        return self.memory.kv_cache_memory_bytes if self.task == "generate" and self.runtime != "ollama" else 0

    @property
    def runtime_memory(self) -> dict[str, Any]:
        """How the plan's memory maps onto the runtime's own flags, and the margin it keeps (issue #12)."""
        m = self.memory
        if self.runtime == "ollama":
            return {"flags": {"OLLAMA_NUM_PARALLEL": self.concurrency, "OLLAMA_CONTEXT_LENGTH": self.max_model_len},
                    "how": "Ollama allocates num_ctx x num_parallel KV slots itself; the plan sizes them with "
                           "Ollama's own estimator, so layers stay on the GPU"}
        if self.runtime == "tgi":
            return {"flags": {"--max-total-tokens": self.max_model_len,
                              "--max-batch-total-tokens": max(self.concurrency * self.max_model_len,
                                                              self.max_num_batched_tokens),
                              "--cuda-memory-fraction": self.gpu_memory_utilization},
                    "how": "TGI has no KV-bytes flag: it sizes its cache from --cuda-memory-fraction after warm-up "
                           "and must find room for --max-batch-total-tokens",
                    "margin_gib_per_gpu": round(m.margin_gib, 2)}
        return {"flags": {"--kv-cache-memory-bytes": self.kv_cache_memory_bytes, "--max-num-seqs": self.concurrency,
                          "--max-num-batched-tokens": self.max_num_batched_tokens,
                          "--gpu-memory-utilization": self.gpu_memory_utilization},
                "how": "vLLM allocates exactly the planned KV pool (its profiling-based sizing is skipped); "
                       "gpu_memory_utilization remains its start-up check of free memory",
                "outside_budget_gib_per_gpu": round(m.outside_budget_gib, 2),
                "margin_gib_per_gpu": round(m.margin_gib, 2)}

    @property
    def instances(self) -> int:
        return self.replicas_min * self.nodes_per_replica

    @property
    def instances_max(self) -> int:
        return self.replicas_max * self.nodes_per_replica

    @property
    def gpus_per_node(self) -> int:
        return self.gpus_per_replica // self.nodes_per_replica

    @property
    def monthly_cost_usd(self) -> float:
        return round(self.hourly_cost_usd * self.replicas_min * HOURS_PER_MONTH, 2)

    @property
    def monthly_cost_max_usd(self) -> float:
        return round(self.hourly_cost_usd * self.replicas_max * HOURS_PER_MONTH, 2)

    def as_dict(self) -> dict[str, Any]:
        m = self.memory
        return {
            "name": self.name, "model": self.model, "task": self.task, "runtime": self.runtime,
            "precision": self.precision, "kv_cache_dtype": self.kv_cache_dtype,
            "instance_type": self.instance_type,
            "gpu": {"name": self.gpu_name, "count": self.gpu_count, "memory_gib": round(self.gpu_memory_gib, 2)},
            "instances": self.instances,
            "replicas": {"min": self.replicas_min, "max": self.replicas_max},
            "nodes_per_replica": self.nodes_per_replica,
            "tensor_parallel_size": self.tensor_parallel_size,
            "pipeline_parallel_size": self.pipeline_parallel_size,
            "gpus_per_replica": self.gpus_per_replica,
            "max_model_len": self.max_model_len, "concurrency": self.concurrency,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "memory": {
                "weights_gib": round(m.weights_gib, 2), "kv_cache_gib": round(m.kv_cache_gib, 2),
                "overhead_gib": round(m.overhead_gib, 2),
                "per_gpu_weights_gib": round(m.per_gpu_weights_gib, 2),
                "per_gpu_kv_cache_gib": round(m.per_gpu_kv_cache_gib, 2),
                "per_gpu_required_gib": round(m.per_gpu_required_gib, 2),
                "per_gpu_usable_gib": round(m.per_gpu_usable_gib, 2),
                "kv_bytes_per_token": int(m.kv_bytes_per_token),
                "activation_gib": round(m.activation_gib, 2), "non_torch_gib": round(m.non_torch_gib, 2),
                "outside_budget_gib": round(m.outside_budget_gib, 2), "cudagraph_gib": round(m.cudagraph_gib, 2),
                "kv_cache_memory_bytes": self.kv_cache_memory_bytes,
                "margin_gib": round(m.margin_gib, 2) if self.runtime != "ollama" else None,
            },
            "runtime_memory": self.runtime_memory,
            "max_concurrency_at_full_context": self.max_concurrency_at_full_context,
            "parameters": self.parameters, "active_parameters": self.active_parameters,
            # per instance (the contract: monthly = hourly x instances x 730); a replica spans nodes_per_replica
            "hourly_cost_usd": round(self.hourly_cost_usd / self.nodes_per_replica, 4),
            "hourly_cost_per_replica_usd": round(self.hourly_cost_usd, 4),
            "monthly_cost_usd": self.monthly_cost_usd,
            "monthly_cost_max_usd": self.monthly_cost_max_usd,
            "volume_gib": self.volume_gib, "startup_seconds": self.startup_seconds,
            "trust_remote_code": self.trust_remote_code, "revision": self.revision,
            "notes": list(self.notes),
            "throughput": self.throughput.as_dict() if self.throughput else None,
            "choice": self.choice, "alternatives": list(self.alternatives), "advice": list(self.advice),
            "provenance": self.provenance, "checksums_sha256": self.checksums_sha256,
            "fallbacks": [f.as_dict() for f in self.fallbacks], "fallbacks_reason": self.fallbacks_reason,
            "startup": self.startup.as_dict() if self.startup else None,
        }


class PlanningError(Exception):
    """No instance can serve a model as configured; carries key paths like a config error."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        super().__init__("\n".join(f"{e.path}: {e.message}" for e in errors))


@dataclass(frozen=True)
class Candidate:
    instance: InstanceType
    layout: Layout
    memory: Memory
    hourly_usd: float


# ----------------------------------------------------------------------------- helpers

def architecture_of(spec: ModelSpec, cat: Catalog) -> Architecture:
    if spec.architecture is not None:
        return spec.architecture
    return cat.models[spec.model].architecture


def workload_of(spec: ModelSpec, cat: Catalog | None = None) -> Workload:
    assert spec.precision is not None and spec.max_model_len is not None   # ModelSpec's validators fill them in
    quant = spec.quantization
    if quant is None and spec.architecture is None:
        entry = (cat or catalog.load()).models.get(spec.model)
        quant = entry.quantization if entry is not None else None
    return Workload(runtime=spec.runtime, precision=spec.precision, kv_cache_dtype=spec.kv_cache_dtype,
                    max_model_len=spec.max_model_len, concurrency=spec.concurrency,
                    max_num_batched_tokens=spec.max_num_batched_tokens,
                    gpu_memory_utilization=spec.gpu_memory_utilization,
                    quant_layout=quant.layout() if quant is not None else None,
                    tensor_parallel=spec.tensor_parallel_size)


LOCAL = "local"     # the instance name of a workstation (platform docker)


def local_instance(stack: StackConfig, cat: Catalog) -> InstanceType:
    """The workstation of `platform: docker` as an instance type: the catalog GPU `local.gpu`, `local.gpu_count`
    of them, no price (it is already paid for). Sizing then runs exactly as for a cloud instance."""
    assert stack.local is not None   # StackConfig requires `local` on platform docker
    gpu = cat.gpus[stack.local.gpu]
    n = stack.local.gpu_count
    return InstanceType.model_construct(
        name=LOCAL, family=LOCAL, gpu=gpu.aws_name, gpu_count=n, gpu_memory_mib=gpu.aws_memory_mib,
        vcpus=1, memory_mib=1, network="", nvme_gb=0, hourly_usd=0.0, interconnect="PCIe" if n > 1 else "",
        purchase="on-demand", price_region="", price_source="")


def hourly_price(instance: InstanceType, stack: StackConfig | None) -> float:
    if instance.name == LOCAL:
        return 0.0
    if stack is not None and instance.name in stack.pricing.hourly_usd:
        return stack.pricing.hourly_usd[instance.name]
    discount = stack.pricing.discount_percent if stack is not None else 0.0
    return instance.hourly_usd * (1 - discount / 100)


def tensor_parallel_options(arch: Architecture, gpus: int) -> list[int]:
    """TP sizes vLLM/TGI accept: 1, 2, 4, 8 dividing the attention heads; KV heads divide or are
    replicated (TP a multiple of KV heads)."""
    kv = arch.kv_heads
    return [t for t in (1, 2, 4, 8) if t <= gpus and arch.num_attention_heads % t == 0
            and (kv % t == 0 or t % kv == 0)]


def _layouts(arch: Architecture, w: Workload, instance: InstanceType, nodes: int) -> list[Layout]:
    """Layouts worth trying on one instance type, most GPUs first."""
    if w.runtime == "ollama":
        return [Layout(layer_split=n) for n in sorted({instance.gpu_count, 1}, reverse=True)]
    return [Layout(tensor_parallel=t, pipeline_parallel=nodes)
            for t in sorted(tensor_parallel_options(arch, instance.gpu_count), reverse=True)
            if w.tensor_parallel is None or t == w.tensor_parallel]      # a forced TP: only that one


def evaluate(arch: Architecture, w: Workload, instance: InstanceType, nodes: int, stack: StackConfig | None,
             cat: Catalog) -> Candidate | None:
    """The best feasible layout of one replica on `nodes` instances of this type, or None."""
    gpu = cat.gpu_of(instance)
    if gpu.compute_capability < cat.precisions[w.precision].min_compute_capability:
        return None
    fitting = []
    for layout in _layouts(arch, w, instance, nodes):
        mem = estimate(arch, w, layout, gpu.memory_gib, cat)
        if mem.fits:
            fitting.append(Candidate(instance, layout, mem, hourly_price(instance, stack) * nodes))
    if not fitting:
        return None
    if w.runtime == "ollama":
        return fitting[-1]      # Ollama keeps a model on one GPU when it fits, else splits over all
    return fitting[0]           # the largest TP that fits: the instance's GPUs are paid for anyway


def _search(arch: Architecture, w: Workload, instances: list[InstanceType], nodes: int,
            stack: StackConfig | None, cat: Catalog) -> Candidate | None:
    """The cheapest feasible candidate: instances in price order, the first that fits wins (ties:
    fewer GPUs). Memory depends only on the GPU model and count, so each pair is sized once."""
    order = sorted(instances, key=lambda i: (hourly_price(i, stack), i.gpu_count, i.name))
    sized: dict[tuple[str, int, int], Candidate | None] = {}
    for inst in order:
        key = (inst.gpu, inst.gpu_memory_mib, inst.gpu_count)
        if key not in sized:
            sized[key] = evaluate(arch, w, inst, nodes, stack, cat)
        c = sized[key]
        if c is not None:
            return Candidate(inst, c.layout, c.memory, hourly_price(inst, stack) * nodes)
    return None


def cheapest(arch: Architecture, w: Workload, platform: str, stack: StackConfig | None, cat: Catalog,
             forced: str | None = None) -> Candidate | None:
    if platform == "docker" and stack is not None and stack.local is not None:
        return _search(arch, w, [local_instance(stack, cat)], 1, stack, cat)
    pool = [cat.instances[forced]] if forced else \
        [i for i in cat.instances.values() if i.purchase == "on-demand"]
    found = _search(arch, w, pool, 1, stack, cat)
    if found is None and platform == "eks" and w.runtime != "ollama":
        for nodes in range(2, MAX_NODES + 1):
            found = _search(arch, w, pool, nodes, stack, cat)
            if found is not None:
                break
    return found


# ----------------------------------------------------------------------------- the choice space

# Policy (not facts) for what the planner may choose on its own:
# - concurrency (vLLM --max-num-seqs): stated -> kept and checked; missing with a `load` -> the largest decode
#   batch that meets the latency targets on each candidate layout, at most MAX_CHOSEN_CONCURRENCY (vLLM's
#   default --max-num-seqs, EngineArgs.max_num_seqs = 256) and at most what the KV cache holds at max_model_len;
#   missing without a load -> DEFAULT_CONCURRENCY (there is no throughput to size for).
# - kv_cache_dtype: stated -> kept (`auto` forbids fp8); missing -> fp8 may be chosen when the runtime supports it
#   and the weights are already 8-bit or 4-bit (fp8, awq, gptq: the entry has accepted quantization error); with
#   16-bit weights an fp8 cache is only advised, never chosen.
# - precision is the user's: a cheaper precision is advice.
MAX_CHOSEN_CONCURRENCY = 256
DEFAULT_CONCURRENCY = 8
ADVICE_MIN_SAVING = 0.05        # advise a config change only when it saves at least 5 %
AUTO_FP8_KV_KINDS = ("fp8", "int4_group")


@dataclass(frozen=True)
class Option:
    """One way to serve a model: a layout on an instance type, KV dtype, concurrency and replicas, priced."""
    candidate: Candidate
    precision: str
    kv_cache_dtype: str
    concurrency: int
    replicas: int                           # replicas always running (what is paid for)
    replicas_for_load: int | None        # what the load needs at TARGET_UTILIZATION (None without a load)
    operating: perf.Operating | None     # at the load (None without one)
    tpot_seconds: float | None           # at the load; without one, at `concurrency` sequences of max_model_len
    usd_per_million_output_tokens: float | None   # at the load; without one, one replica at full batch
    change: str = ""                        # the config change this option needs ("" = none)

    @property
    def monthly_usd(self) -> float:
        return round(self.candidate.hourly_usd * self.replicas * HOURS_PER_MONTH, 2)

    @property
    def instance_type(self) -> str:
        return self.candidate.instance.name

    def key(self) -> tuple[float, float, int, int, float, str]:
        """Cheapest first; at equal cost the most requests carried, then fewer GPUs, larger TP, the name."""
        carried = self.operating.requests_per_s * self.replicas if self.operating else 0.0
        return (self.monthly_usd, -round(carried, 6), self.candidate.instance.gpu_count,
                -self.candidate.layout.tensor_parallel, self.candidate.hourly_usd, self.instance_type)

    def as_dict(self) -> OptionDict:
        r = _round
        return {"instance_type": self.instance_type, "precision": self.precision,
                "kv_cache_dtype": self.kv_cache_dtype,
                "tensor_parallel_size": self.candidate.layout.tensor_parallel,
                "pipeline_parallel_size": self.candidate.layout.pipeline_parallel,
                "concurrency": self.concurrency, "replicas": self.replicas,
                "replicas_for_load": self.replicas_for_load,
                "hourly_cost_per_replica_usd": round(self.candidate.hourly_usd, 4),
                "monthly_cost_usd": self.monthly_usd,
                "usd_per_million_output_tokens": r(self.usd_per_million_output_tokens, 3),
                "tpot_seconds": r(self.tpot_seconds, 4),
                "change": self.change or None}

    def describe(self, local: bool = False) -> str:
        lay = self.candidate.layout
        how = (f"TP {lay.tensor_parallel}" if lay.tensor_parallel > 1 else
               f"{lay.layer_split}-GPU layer split" if lay.layer_split > 1 else "1 GPU")
        if lay.pipeline_parallel > 1:
            how += f" x PP {lay.pipeline_parallel}"
        what = f"{how}, concurrency {self.concurrency}, kv {self.kv_cache_dtype}"
        if local:
            return what
        return (f"{self.replicas} x {self.instance_type} ({what}, ${self.monthly_usd:,.0f}/month"
                + (f", TPOT {self.tpot_seconds * 1e3:.1f} ms" if self.operating and self.tpot_seconds else "") + ")")


def kv_choices(spec: ModelSpec, cat: Catalog) -> tuple[tuple[str, ...], str]:
    """The KV-cache dtypes the planner may choose from for this entry, and whether they were stated."""
    if "kv_cache_dtype" in spec.model_fields_set:
        return (spec.kv_cache_dtype,), "stated"
    assert spec.precision is not None   # ModelSpec's validator fills it in
    fp8 = cat.kv_dtypes.get("fp8")
    if (fp8 is not None and spec.runtime in fp8.runtimes and cat.precisions[spec.precision].kind in AUTO_FP8_KV_KINDS
            and architecture_of(spec, cat).task == "generate"):      # an embedder keeps no KV cache
        return ("auto", "fp8"), "chosen"
    return (spec.kv_cache_dtype,), "default"


def concurrency_stated(spec: ModelSpec) -> bool:
    return "concurrency" in spec.model_fields_set


def _pool(stack: StackConfig | None, cat: Catalog, platform: str, forced: str | None) -> list[InstanceType]:
    if platform == "docker" and stack is not None and stack.local is not None:
        return [local_instance(stack, cat)]
    if forced:
        return [cat.instances[forced]]
    return [i for i in cat.instances.values() if i.purchase == "on-demand"]


def _distinct(instances: list[InstanceType], stack: StackConfig | None) -> list[InstanceType]:
    """The cheapest instance type of every GPU configuration (memory depends on GPU model and count only)."""
    pricing = None if stack is None else (stack.pricing.discount_percent,
                                          tuple(sorted(stack.pricing.hourly_usd.items())))
    key = (tuple((i.name, i.gpu, i.gpu_count) for i in instances), pricing)
    if key not in _DISTINCT:
        _DISTINCT[key] = _distinct_uncached(instances, stack)
    return _DISTINCT[key]


# (the instances' (name, GPU, count), the stack's (discount, price overrides) or None) -> the distinct types
_DISTINCT: dict[tuple[tuple[tuple[str, str, int], ...], tuple[float, tuple[tuple[str, float], ...]] | None],
                list[InstanceType]] = {}


def _distinct_uncached(instances: list[InstanceType], stack: StackConfig | None) -> list[InstanceType]:
    out, seen = [], set()
    for inst in sorted(instances, key=lambda i: (hourly_price(i, stack), i.gpu_count, i.name)):
        key = (inst.gpu, inst.gpu_memory_mib, inst.gpu_count, inst.interconnect)
        if key not in seen:
            seen.add(key)
            out.append(inst)
    return out


def _replicas_for(spec: ModelSpec, need: int | None, ha: int) -> int | None:
    """Replicas always running for a load that needs `need` (None: no load); None if the stated bounds cannot
    carry it."""
    if spec.replicas is not None:
        return spec.replicas if need is None or need <= spec.replicas else None
    if spec.autoscaling is not None:
        return spec.autoscaling.min if need is None or need <= spec.autoscaling.max else None
    return 1 if need is None else max(need, ha)


def explore(spec: ModelSpec, arch: Architecture, w: Workload, stack: StackConfig, cat: Catalog, *,
            instances: list[InstanceType], nodes: int = 1, kv: tuple[str, ...] = (),
            concurrency: int | None = None, first: int = 0, bounded: bool = True,
            budget: float | None = None, presorted: bool = False) -> list[Option]:
    """Every feasible way to serve `spec` on these instance types, cheapest first.

    `concurrency`: fixed, or None to choose it (with a load: the largest batch meeting the targets). `first`:
    without a load, cost is replicas x price, so the first `first` feasible types in price order are the
    cheapest; the search stops there. `bounded`: drop options the stated replicas/autoscaling.max cannot carry.
    `budget`: only options at most this $/month are wanted. Types come in price order and a type costs at least
    its price x the fewest replicas that may run, so once that floor passes the budget (or the third-cheapest
    type found so far: alternatives show three), no later type can enter and the search stops."""
    ha = _ha_minimum(stack)
    load = spec.load
    options: list[Option] = []
    found_types = 0
    fewest = (spec.replicas or (spec.autoscaling.min if spec.autoscaling else None)
              or (ha if load is not None else 1)) if bounded else 1
    best_per_type: dict[str, float] = {}
    weights_gib = weight_bytes(arch, w.precision) / GIB
    fixed = concurrency if concurrency is not None else (
        w.concurrency if load is None or arch.task != "generate" else None)
    variants = []       # (kv dtype, its workload, the workload memory is probed with, a floor of its GiB)
    for kv_dtype in kv or (w.kv_cache_dtype,):
        base = _replace(w, kv_cache_dtype=kv_dtype)
        probe = _replace(base, concurrency=fixed if fixed is not None else 1)
        # weights and KV pool of the whole replica: no layout puts less than 1/GPUs of them on a GPU (Ollama keeps
        # the token embeddings in host memory, so it gets no floor)
        kv_gib = (probe.concurrency * probe.max_model_len * arch.num_hidden_layers
                  * kv_bytes_per_token_per_layer(arch, cat.kv_dtypes[kv_dtype].bytes) / GIB)
        variants.append((kv_dtype, base, probe, 0.0 if w.runtime == "ollama" else weights_gib + kv_gib))
    for inst in (instances if presorted else _distinct(instances, stack)):
        floor = hourly_price(inst, stack) * nodes * fewest * HOURS_PER_MONTH
        third = sorted(best_per_type.values())[2] if len(best_per_type) >= 3 else None
        if (budget is not None and floor > budget) or (third is not None and floor > third):
            break
        gpu = cat.gpu_of(inst)
        if gpu.compute_capability < cat.precisions[w.precision].min_compute_capability:
            continue
        if weights_gib > inst.gpu_count * nodes * gpu.memory_gib * w.gpu_memory_utilization:
            continue            # the weights alone exceed all its GPUs: no layout can fit
        price = hourly_price(inst, stack) * nodes
        hw = _hardware(inst, cat) if load is not None else None
        before = len(options)
        layouts = _layouts(arch, w, inst, nodes)
        if w.runtime == "ollama":
            layouts = layouts[::-1]     # Ollama keeps a model on one GPU when it fits, else splits over all
        usable = gpu.memory_gib * w.gpu_memory_utilization
        for kv_dtype, base, probe, floor_gib in variants:
            kv_bytes = cat.kv_dtypes[kv_dtype].bytes
            for layout in layouts:
                if floor_gib / layout.gpus > usable:
                    continue                # cannot fit, whatever the overheads: skip the full estimate
                if fixed is not None:
                    mem = _estimate(arch, probe, layout, gpu.memory_gib)
                    if not mem.fits:
                        continue
                    cmax = fixed
                else:
                    cmax = min(_max_sequences(arch, probe, layout, gpu.memory_gib), MAX_CHOSEN_CONCURRENCY)
                    if cmax < 1:
                        continue
                op = None
                if load is not None:
                    assert hw is not None   # sized above whenever there is a load
                    op = perf.best_operating_point(arch, w.precision, kv_bytes, layout, hw, cmax, load.prompt_tokens,
                                                   load.output_tokens, w.max_num_batched_tokens, TARGET_UTILIZATION,
                                                   load.ttft_p99_seconds, load.tpot_p99_seconds, w.quant_layout)
                    if op is None:
                        continue
                if fixed is not None:
                    conc = fixed
                else:
                    assert op is not None   # no fixed concurrency only with a load: op was found above
                    conc = op.batch
                need = (None if op is None or load is None    # op is None without a load
                        else max(1, math.ceil(load.requests_per_second / op.requests_per_s - 1e-9)))
                replicas = _replicas_for(spec, need, ha) if bounded else (max(need, ha) if need else 1)
                if replicas is None:
                    continue
                mem = _estimate(arch, probe if conc == probe.concurrency else _replace(base, concurrency=conc),
                                layout, gpu.memory_gib)
                cand = Candidate(inst, layout, mem, price)
                if op is not None:
                    assert load is not None   # op is the load's operating point
                    tpot = op.tpot_s
                    usd = (None if not load.output_tokens else
                           replicas * price / (load.requests_per_second * load.output_tokens * 3600) * 1e6)
                else:
                    tpot = usd = None   # without a load: priced by _with_rates for the options shown only
                options.append(Option(cand, w.precision, kv_dtype, conc, replicas, need, op, tpot, usd))
                if load is None and w.runtime != "ollama":
                    break           # without a load: the largest TP that fits (the GPUs are paid for anyway)
                if w.runtime == "ollama":
                    break
        if len(options) > before:
            best_per_type[inst.name] = min(o.monthly_usd for o in options[before:])
            found_types += 1
            if first and load is None and found_types >= first:
                break
    options.sort(key=Option.key)
    return options


def _with_rates(o: Option, arch: Architecture, w: Workload, cat: Catalog) -> Option:
    """An option without a load, with its TPOT at `concurrency` sequences of max_model_len and its price per
    million output tokens at that full batch (what one replica costs when it is kept busy)."""
    if o.operating is not None or arch.task != "generate" or o.tpot_seconds is not None:
        return o
    c = o.candidate
    step = perf.decode_step(arch, o.precision, cat.kv_dtypes[o.kv_cache_dtype].bytes, c.layout,
                            _hardware(c.instance, cat), o.concurrency, w.max_model_len, w.quant_layout).seconds
    return dataclasses.replace(o, tpot_seconds=step,
                               usd_per_million_output_tokens=c.hourly_usd * step / (o.concurrency * 3600) * 1e6)


def _nodes_needed(arch: Architecture, w: Workload, platform: str, stack: StackConfig, cat: Catalog,
                  forced: str | None) -> int | None:
    found = cheapest(arch, w, platform, stack, cat, forced)
    return None if found is None else found.layout.pipeline_parallel


@dataclass(frozen=True)
class Choice:
    chosen: Option
    runner_up: Option | None
    alternatives: tuple[Option, ...]        # the three cheapest, one per instance type, the chosen first
    advice: tuple[Option, ...]              # cheaper options that need a config change
    reason: str


def choose(spec: ModelSpec, index: int, arch: Architecture, w: Workload, stack: StackConfig, cat: Catalog,
           nodes: int) -> Choice:
    """Co-optimise instance type, TP, KV dtype, concurrency and replicas for one model entry."""
    forced = spec.instance_type
    pool = _distinct(_pool(stack, cat, stack.platform, forced), stack)
    kv, kv_how = kv_choices(spec, cat)
    fixed = spec.concurrency if concurrency_stated(spec) else None
    local = stack.platform == "docker"
    multi = nodes > 1
    first = 0 if local else 3
    options = explore(spec, arch, w, stack, cat, instances=pool, nodes=nodes, kv=kv, concurrency=fixed, first=first,
                      presorted=True)
    if not options:
        fits_somewhere = fixed is None or any(evaluate(arch, w, i, nodes, stack, cat) for i in pool)
        if spec.load is not None and fits_somewhere:
            unbounded = explore(spec, arch, w, stack, cat, instances=pool, nodes=nodes, kv=kv, concurrency=fixed,
                                bounded=False, presorted=True)
            if unbounded:
                raise PlanningError([_bounds_error(spec, index, unbounded[0])])
            feasible = [c for c in (evaluate(arch, _replace(w, concurrency=1), i, nodes, stack, cat)
                                    for i in _distinct(pool, stack)) if c]
            if feasible:
                raise PlanningError(latency_errors(spec, index, arch, w, feasible, cat))
        key = f"llm-platform:models[{index}]" + (".instance_type" if forced else ".tensor_parallel_size"
                                                 if spec.tensor_parallel_size else "")
        raise PlanningError([ConfigError(key,
                                         infeasible_message(spec, arch, w, stack, cat), model=spec.name)])
    chosen = options[0]
    per_type: dict[str, Option] = {}
    for o in options:
        per_type.setdefault(o.instance_type, o)
    alternatives = tuple(sorted(per_type.values(), key=Option.key)[:3])
    runner_up = next((o for o in alternatives[1:]), None)
    if runner_up is None:
        runner_up = next((o for o in options[1:] if (o.candidate.layout, o.kv_cache_dtype, o.concurrency)
                          != (chosen.candidate.layout, chosen.kv_cache_dtype, chosen.concurrency)), None)
    advice = () if local or multi else tuple(_advice(spec, arch, w, stack, cat, pool, kv, fixed, chosen))
    done: dict[int, Option] = {}
    priced: Callable[[Option], Option] = lambda o: done.setdefault(id(o), _with_rates(o, arch, w, cat))  # noqa: E731
    alternatives = tuple(map(priced, alternatives))
    runner_up = None if runner_up is None else priced(runner_up)
    advice = tuple(_with_rates(o, arch, w if o.precision == w.precision else
                               _replace(w, precision=o.precision, quant_layout=None), cat) for o in advice)
    return Choice(chosen, runner_up, alternatives, advice, _reason(spec, chosen, runner_up, kv_how, fixed, local))


def _bounds_error(spec: ModelSpec, index: int, best: Option) -> ConfigError:
    base = f"llm-platform:models[{index}]"
    assert best.operating is not None and spec.load is not None   # called only for options sized for a load
    need, per = best.replicas_for_load, best.operating.requests_per_s
    why = (f"{spec.load.requests_per_second:g} req/s at {per:.3g} req/s per replica (batch {best.operating.batch}, "
           f"{TARGET_UTILIZATION:.0%} utilization) needs {need} replicas on {best.instance_type}")
    if spec.replicas is not None:
        return ConfigError(f"{base}.replicas", f"{why}: raise replicas to {need}, or remove it and let the load "
                                               "decide", model=spec.name)
    return ConfigError(f"{base}.autoscaling.max", f"{why}: raise autoscaling.max to at least {need}, or remove "
                                                  "autoscaling and let the load decide", model=spec.name)


def _reason(spec: ModelSpec, chosen: Option, runner_up: Option | None, kv_how: str, fixed: int | None,
            local: bool) -> str:
    if local:
        return f"sized against the workstation's GPUs: {chosen.describe(local=True)}"
    what = "cheapest fleet that carries the load within the latency targets" if spec.load is not None else \
        "cheapest instance type the model fits"
    if spec.instance_type:
        what = f"instance_type {spec.instance_type} is stated; the best layout on it"
    conc = ("concurrency stated" if fixed is not None else
            "concurrency chosen: the largest batch meeting the targets" if spec.load is not None
            and chosen.operating is not None and chosen.operating.tpot_s is not None else
            f"concurrency {chosen.concurrency} (the default without a load)" if spec.load is None else
            "concurrency stated")
    kv = {"stated": "kv_cache_dtype stated", "chosen": f"kv_cache_dtype {chosen.kv_cache_dtype} chosen (fp8 allowed: "
          "quantized weights, kv_cache_dtype unset)", "default": "kv_cache_dtype auto (16-bit weights: fp8 only "
          "if you set it)"}[kv_how]
    out = f"{what}: {chosen.describe()}; {conc}; {kv}"
    if runner_up is not None:
        d = runner_up.monthly_usd - chosen.monthly_usd
        out += f"; runner-up {runner_up.describe()}" + (f", +${d:,.0f}/month" if d > 0 else "")
    return out


def _advice(spec: ModelSpec, arch: Architecture, w: Workload, stack: StackConfig, cat: Catalog,
            pool: list[InstanceType], kv: tuple[str, ...], fixed: int | None, chosen: Option) -> list[Option]:
    """Cheaper options one config change away: an fp8 KV cache, another concurrency, a 4/8-bit precision."""
    out: list[Option] = []
    limit = chosen.monthly_usd * (1 - ADVICE_MIN_SAVING)

    def consider(options: list[Option], change: str) -> None:
        if options and options[0].monthly_usd <= limit:
            out.append(dataclasses.replace(options[0], change=change))

    fp8 = cat.kv_dtypes.get("fp8")
    if "fp8" not in kv and fp8 is not None and w.runtime in fp8.runtimes and arch.task == "generate":
        consider(explore(spec, arch, w, stack, cat, instances=pool, kv=("fp8",), concurrency=fixed, first=1,
                         budget=limit, presorted=True), "kv_cache_dtype: fp8")
    if arch.task == "generate" and w.runtime != "ollama":
        if spec.load is not None and fixed is not None:
            free = explore(spec, arch, w, stack, cat, instances=pool, kv=kv, concurrency=None, budget=limit,
                           presorted=True)
            if free:
                consider(free, f"concurrency: {free[0].concurrency} (or remove it: the planner then chooses)")
        elif spec.load is None and chosen.candidate.memory.per_gpu_kv_cache_gib > \
                chosen.candidate.memory.per_gpu_weights_gib:     # the KV cache decides the instance
            lower = _lower_concurrency(spec, arch, w, stack, cat, pool, kv, chosen)
            if lower is not None:
                consider([lower], f"concurrency: {lower.concurrency}")
    for p in _lower_precisions(cat, w):
        # another precision is another checkpoint: the stated checkpoint's own byte layout no longer applies
        found = explore(spec, arch, _replace(w, precision=p, quant_layout=None), stack, cat, instances=pool, kv=kv,
                        concurrency=fixed, first=1, budget=limit, presorted=True)
        if found:
            how = ("an AWQ/GPTQ 4-bit checkpoint of the model" if cat.precisions[p].kind == "int4_group" else
                   "vLLM quantizes the weights at load" if p == "fp8" else "")
            consider(found, f"precision: {p}" + (f" ({how})" if how else ""))
            break
    return sorted(out, key=Option.key)


def _lower_precisions(cat: Catalog, w: Workload) -> list[str]:
    here = _bits(cat, w.precision)
    names = [p for p, d in cat.precisions.items() if w.runtime in d.runtimes and d.kind in ("fp8", "int4_group")
             and _bits(cat, p) < here]
    return sorted(names, key=lambda p: -_bits(cat, p))


def _lower_concurrency(spec: ModelSpec, arch: Architecture, w: Workload, stack: StackConfig, cat: Catalog,
                       pool: list[InstanceType], kv: tuple[str, ...], chosen: Option) -> Option | None:
    """Without a load, the KV cache can dominate: the cheaper type that holds at least half the sequences,
    and the most sequences it holds."""
    best = None
    one = _replace(w, concurrency=1, kv_cache_dtype=kv[0])
    weights_gib = weight_bytes(arch, w.precision) / GIB
    for inst in pool:
        if hourly_price(inst, stack) >= chosen.candidate.hourly_usd:
            break
        gpu = cat.gpu_of(inst)
        if (gpu.compute_capability < cat.precisions[w.precision].min_compute_capability
                or weights_gib > inst.gpu_count * gpu.memory_gib * w.gpu_memory_utilization):
            continue
        # the largest TP that holds a sequence (as evaluate picks it), and how many it holds there
        seqs = next((n for n in (_max_sequences(arch, one, lay, gpu.memory_gib) for lay in _layouts(arch, w, inst, 1))
                     if n > 0), 0)
        if seqs >= max(1, math.ceil(w.concurrency / 2)) and seqs < w.concurrency:
            if best is None or seqs > best[0]:
                best = (seqs, inst)
    if best is None:
        return None
    found = explore(spec, arch, w, stack, cat, instances=[best[1]], kv=kv[:1], concurrency=best[0])
    return found[0] if found else None


# ----------------------------------------------------------------------------- planning

def plan_model(spec: ModelSpec, index: int, stack: StackConfig, cat: Catalog | None = None) -> DeploymentPlan:
    cat = cat or catalog.load()
    assert spec.precision is not None and spec.max_model_len is not None   # ModelSpec's validators fill them in
    arch = architecture_of(spec, cat)
    w = workload_of(spec, cat)
    nodes: int | None = 1
    if stack.platform == "eks" and w.runtime != "ollama":     # only eks spans nodes: how many one replica needs
        nodes = _nodes_needed(arch, w, stack.platform, stack, cat, spec.instance_type)
        if nodes is None and "fp8" in kv_choices(spec, cat)[0]:
            nodes = _nodes_needed(arch, _replace(w, kv_cache_dtype="fp8"), stack.platform, stack, cat,
                                  spec.instance_type)
    if nodes is None and not (spec.load is not None and not concurrency_stated(spec)):
        key = f"llm-platform:models[{index}]" + (".instance_type" if spec.instance_type
                                                 else ".tensor_parallel_size" if spec.tensor_parallel_size else "")
        raise PlanningError([ConfigError(key,
                                         infeasible_message(spec, arch, w, stack, cat), model=spec.name)])
    choice = choose(spec, index, arch, w, stack, cat, nodes or 1)
    best = choice.chosen
    w = _replace(w, kv_cache_dtype=best.kv_cache_dtype, concurrency=best.concurrency)
    notes = []
    if spec.instance_type:
        free = cheapest(arch, w, stack.platform, stack, cat)
        if free is not None and free.hourly_usd < best.candidate.hourly_usd:
            notes.append(f"forced {spec.instance_type} costs ${best.candidate.hourly_usd:.2f}/h per replica; "
                         f"{free.instance.name} would serve it for ${free.hourly_usd:.2f}/h")
    inst, layout, mem = best.candidate.instance, best.candidate.layout, best.candidate.memory
    gpu = cat.gpu_of(inst)
    if choice.advice:
        notes.append(_advice_note(spec, mem, choice))
    if gpu.estimated:
        notes.append(f"{gpu.name}'s CUDA-visible memory is estimated, not measured: confirm with nvidia-smi")
    if inst.price_region:
        notes.append(f"{inst.name} price is for {inst.price_region}; set llm-platform:pricing.hourly_usd for yours")
    if spec.tensor_parallel_size and layout.tensor_parallel < inst.gpu_count:
        notes.append(f"tensor_parallel_size {layout.tensor_parallel} uses {layout.tensor_parallel} of "
                     f"{inst.name}'s {inst.gpu_count} GPUs per replica")
    if layout.pipeline_parallel > 1:
        notes.append(f"no single {inst.name} holds a replica: {layout.pipeline_parallel} nodes in pipeline parallel")
    if stack.platform != "docker" and stack.region != cat.prices_region and not stack.pricing.hourly_usd:
        notes.append(f"prices are {cat.prices_region} on-demand list prices; {stack.region} differs")
    if spec.runtime == "vllm" and arch.task == "generate":
        notes.append(f"vLLM runs with --kv-cache-memory-bytes {mem.kv_cache_memory_bytes} per GPU: exactly "
                     f"{w.concurrency} x {spec.max_model_len}-token sequences; "
                     f"{mem.outside_budget_gib:.1f} GiB per GPU for the CUDA context and NCCL, "
                     f"{mem.margin_gib:.1f} GiB stays free as margin")
    replicas_min = spec.autoscaling.min if spec.autoscaling else (spec.replicas or 1)
    replicas_max = spec.autoscaling.max if spec.autoscaling else replicas_min
    hw = perf.hardware_of(inst, cat)
    kv_bytes = cat.kv_dtypes[w.kv_cache_dtype].bytes
    r = perf.rates(arch, w.precision, kv_bytes, layout, hw, w.max_model_len, w.concurrency, w.max_num_batched_tokens,
                   w.quant_layout)
    throughput = Throughput(r.decode_tokens_per_s_single, r.decode_tokens_per_s_full, r.prefill_tokens_per_s)
    if best.operating is not None:
        assert best.replicas_for_load is not None   # set with the operating point
        fleet = Fleet(best.candidate, best.operating, best.replicas_for_load)
        replicas_min, replicas_max, more = _replicas(spec, index, fleet, _ha_minimum(stack))
        notes += more
        op = best.operating
        throughput = Throughput(r.decode_tokens_per_s_single, r.decode_tokens_per_s_full, r.prefill_tokens_per_s,
                                ttft_seconds=op.ttft_s, tpot_seconds=op.tpot_s, batch_for_load=op.batch,
                                requests_per_s_per_replica=op.requests_per_s, replicas_for_load=fleet.replicas,
                                usd_per_million_output_tokens=best.usd_per_million_output_tokens)
    gpus_per_node = layout.tensor_parallel * layout.layer_split
    startup = WARMUP_S + mem.weights_gib * (1 / DOWNLOAD_GIB_PER_S + 1 / VERIFY_GIB_PER_S + 1 / LOAD_GIB_PER_S)
    kv_how = kv_choices(spec, cat)[1]
    plan = DeploymentPlan(
        name=spec.name, model=spec.model, task=arch.task, runtime=spec.runtime, precision=spec.precision,
        kv_cache_dtype=w.kv_cache_dtype, instance_type=inst.name, gpu_name=gpu.name,
        gpu_count=inst.gpu_count, gpu_memory_gib=gpu.memory_gib, nodes_per_replica=layout.pipeline_parallel,
        replicas_min=replicas_min, replicas_max=replicas_max,
        tensor_parallel_size=layout.tensor_parallel, pipeline_parallel_size=layout.pipeline_parallel,
        gpus_per_replica=gpus_per_node * layout.pipeline_parallel,
        max_model_len=spec.max_model_len, concurrency=w.concurrency,
        max_num_batched_tokens=spec.max_num_batched_tokens, gpu_memory_utilization=spec.gpu_memory_utilization,
        memory=mem,
        max_concurrency_at_full_context=(max_sequences(arch, w, layout, gpu.memory_gib, cat)
                                         if arch.task == "generate" else None),
        parameters=parameter_count(arch), active_parameters=active_parameter_count(arch),
        hourly_cost_usd=best.candidate.hourly_usd,
        volume_gib=int(math.ceil(mem.weights_gib / layout.pipeline_parallel * 2 + ROOT_VOLUME_GIB)),
        startup_seconds=int(math.ceil(startup / 10) * 10),
        trust_remote_code=spec.trust_remote_code, revision=spec.revision, notes=tuple(notes),
        throughput=throughput,
        choice={"reason": choice.reason,
                "concurrency": "stated" if concurrency_stated(spec) else ("chosen" if spec.load is not None
                                                                          and arch.task == "generate" else "default"),
                "kv_cache_dtype": kv_how,
                "replicas": ("stated" if spec.replicas is not None or spec.autoscaling is not None
                             else "load" if spec.load is not None else "default"),
                "runner_up": choice.runner_up.as_dict() if choice.runner_up else None},
        alternatives=tuple(o.as_dict() for o in choice.alternatives),
        advice=tuple(o.as_dict() for o in choice.advice),
        provenance=(spec.provenance.model_dump() if spec.provenance else None),
        checksums_sha256=(spec.checksums.sha256 if spec.checksums else None),
    )
    from .fallbacks import attach  # the capacity module builds on this one's evaluate(); imported late
    return attach(plan, spec, stack, cat)


def _advice_note(spec: ModelSpec, mem: Memory, choice: Choice) -> str:
    chosen = choice.chosen
    parts = []
    for o in choice.advice:
        saving = 1 - o.monthly_usd / chosen.monthly_usd if chosen.monthly_usd else 0
        parts.append(f"{o.change} -> {o.replicas} x {o.instance_type} ${o.monthly_usd:,.0f}/month ({saving:.0%} less)")
    head = "cheaper with one config change: "
    if spec.load is None and mem.per_gpu_kv_cache_gib > mem.per_gpu_weights_gib:
        share = mem.per_gpu_kv_cache_gib / mem.per_gpu_required_gib
        head = (f"the KV cache ({chosen.concurrency} x {spec.max_model_len} tokens, {mem.per_gpu_kv_cache_gib:.1f} GiB "
                f"per GPU) is {share:.0%} of the need and decides the instance; cheaper with one config change: ")
    return head + "; or ".join(parts)


def plan_stack(stack: StackConfig, cat: Catalog | None = None) -> list[DeploymentPlan]:
    """One plan per model; every model that cannot be planned is reported, not just the first. On docker,
    the models share the workstation's GPUs: their per-GPU needs are added up and each runtime gets its
    share of gpu_memory_utilization (see share_local_gpus)."""
    plans, errors = [], []
    for i, spec in enumerate(stack.models):
        try:
            plans.append(plan_model(spec, i, stack, cat))
        except PlanningError as exc:
            errors += exc.errors
    if errors:
        raise PlanningError(errors)
    if stack.platform == "docker" and len(plans) > 1:
        plans = share_local_gpus(plans, stack, cat or catalog.load())
    return plans


# Docker: every container sees all of `local.gpu_count` GPUs and the runtimes load onto the same ones, so the
# per-GPU needs add up. vLLM's --gpu-memory-utilization is a per-instance budget ("if you have two vLLM
# instances running on the same GPU, you can set the GPU memory utilization to 0.5 for each instance",
# https://docs.vllm.ai/en/stable/configuration/engine_args.html), so each gets its share; they sum to at most
# LOCAL_SHARED_UTILIZATION, leaving the rest to the driver and the desktop.
LOCAL_SHARED_UTILIZATION = 0.95


def share_local_gpus(plans: list[DeploymentPlan], stack: StackConfig, cat: Catalog) -> list[DeploymentPlan]:
    assert stack.local is not None   # StackConfig requires `local` on platform docker
    gpu = cat.gpus[stack.local.gpu]
    total = gpu.memory_gib
    needs = [p.memory.per_gpu_required_gib for p in plans]
    budget = total * LOCAL_SHARED_UTILIZATION
    if sum(needs) > budget:
        each = ", ".join(f"{p.name} {n:.1f} GiB" for p, n in zip(plans, needs, strict=True))
        raise PlanningError([ConfigError("llm-platform:local", (
            f"the models share {stack.local.gpu_count} x {gpu.name} ({total:.1f} GiB each) and need {sum(needs):.1f} "
            f"GiB per GPU together ({each}), above {LOCAL_SHARED_UTILIZATION:.0%} of it ({budget:.1f} GiB): lower "
            f"max_model_len or concurrency, a smaller precision, or set local.gpu_count / a larger local.gpu"))])
    spare = budget - sum(needs)
    out = []
    for p, need, spec in zip(plans, needs, stack.models, strict=True):
        share = math.floor((need + spare * need / sum(needs)) / total * 1000) / 1000
        usable = total * share
        mem = dataclasses.replace(p.memory, per_gpu_usable_gib=usable)
        fits = p.max_concurrency_at_full_context
        if fits is not None:        # what the smaller budget holds
            arch, layout = architecture_of(spec, cat), Layout(p.tensor_parallel_size, p.pipeline_parallel_size,
                                                              p.gpus_per_replica // p.tensor_parallel_size
                                                              // p.pipeline_parallel_size)
            w = _replace(workload_of(spec), kv_cache_dtype=p.kv_cache_dtype, concurrency=p.concurrency,
                         gpu_memory_utilization=share)
            fits = max_sequences(arch, w, layout, total, cat)
        how = ("Ollama takes no budget flag: it loads into the memory the others leave free, which the sum "
               "guarantees" if p.runtime == "ollama" else
               f"--gpu-memory-utilization {share:.3f}" if p.runtime == "vllm" else
               f"--cuda-memory-fraction {share:.3f}")
        note = (f"shares the workstation's {stack.local.gpu_count} x {gpu.name} with {len(plans) - 1} other model"
                f"{'s' if len(plans) > 2 else ''} ({sum(needs):.1f} of {total:.1f} GiB per GPU together): "
                f"{usable:.1f} GiB for a need of {need:.1f}; {how}")
        out.append(dataclasses.replace(p, gpu_memory_utilization=share, memory=mem, notes=p.notes + (note,),
                                       max_concurrency_at_full_context=fits))
    return out


# ----------------------------------------------------------------------------- capacity planning

@dataclass(frozen=True)
class Fleet:
    candidate: Candidate
    operating: perf.Operating
    replicas: int                 # what the load needs at TARGET_UTILIZATION (before the HA minimum)
    alternative: str = ""


def _ha_minimum(stack: StackConfig) -> int:
    return 2 if stack.environment == "prod" else 1


def _replicas(spec: ModelSpec, index: int, fleet: Fleet, ha: int) -> tuple[int, int, list[str]]:
    """(min, max, notes): derived from the load, or the stated ones (already checked to carry it)."""
    need = fleet.replicas
    assert spec.load is not None   # a fleet is sized for the load
    rps = spec.load.requests_per_second
    per = fleet.operating.requests_per_s
    why = (f"{rps:g} req/s at {per:.3g} req/s per replica (batch {fleet.operating.batch}, "
           f"{TARGET_UTILIZATION:.0%} utilization) needs {need}")
    if spec.replicas is not None:
        return spec.replicas, spec.replicas, []
    if spec.autoscaling is not None:
        notes = [] if spec.autoscaling.min >= need else [
            f"autoscaling.min {spec.autoscaling.min} is below the {need} replicas the stated load needs: "
            f"until it scales out, TTFT and TPOT exceed their targets"]
        return spec.autoscaling.min, spec.autoscaling.max, notes
    low = max(need, ha)
    high = max(low + 1, math.ceil(need * BURST_FACTOR))
    floor = f"; the HA minimum {ha} keeps {low} running" if low > need else ""
    return low, high, [f"replicas from load: {why}{floor}; autoscaling {low}-{high} ({BURST_FACTOR:g}x the load)"]


def latency_errors(spec: ModelSpec, index: int, arch: Architecture, w: Workload, pool: list[Candidate],
                   cat: Catalog) -> list[ConfigError]:
    """Why no instance meets the latency targets, and what each target could be, on which instance."""
    load, base = spec.load, f"llm-platform:models[{index}].load"
    assert load is not None   # latency targets come with a load
    kv = cat.kv_dtypes[w.kv_cache_dtype].bytes
    points = []
    for c in pool:
        hw = perf.hardware_of(c.instance, cat)
        op = perf.operating_point(arch, w.precision, kv, c.layout, hw, 1, load.prompt_tokens, load.output_tokens,
                                  w.max_num_batched_tokens, TARGET_UTILIZATION, w.quant_layout)
        points.append((c, op))
    first = points[0]
    errors = []
    where: Callable[[Candidate], str] = lambda c: (f"{c.instance.name} ({c.layout.gpus} x {cat.gpu_of(c.instance).name}"  # noqa: E731
                       + (f", TP {c.layout.tensor_parallel}" if w.runtime != "ollama" else "")
                       + f", ${c.hourly_usd:.2f}/h)")
    if load.ttft_p99_seconds is not None and min(op.ttft_s for _, op in points) > load.ttft_p99_seconds:
        c, op = min(points, key=lambda p: p[1].ttft_s)
        errors.append(ConfigError(f"{base}.ttft_p99_seconds", model=spec.name, message=(
            f"{load.ttft_p99_seconds:g} s cannot be met for {load.prompt_tokens}-token prompts at {w.precision}: "
            f"the first token takes {first[1].ttft_s:.3g} s on {where(first[0])}; the fastest is {op.ttft_s:.3g} s "
            f"on {where(c)}: raise ttft_p99_seconds to at least {_ceil3(op.ttft_s)}"
            + ("" if spec.instance_type is None else ", or remove instance_type") + ", or shorten prompts")))
    if (load.tpot_p99_seconds is not None and first[1].tpot_s is not None
            and min(op.tpot_s for _, op in points if op.tpot_s is not None) > load.tpot_p99_seconds):
        c, op = min(points, key=lambda p: p[1].tpot_s or math.inf)   # all set: the model generates
        assert op.tpot_s is not None
        errors.append(ConfigError(f"{base}.tpot_p99_seconds", model=spec.name, message=(
            f"{load.tpot_p99_seconds:g} s per token cannot be met at {w.precision}: one sequence decodes at "
            f"{first[1].tpot_s * 1e3:.3g} ms per token on {where(first[0])}; the fastest is {op.tpot_s * 1e3:.3g} ms "
            f"on {where(c)}: raise tpot_p99_seconds to at least {_ceil3(op.tpot_s, 4)}"
            + ("" if spec.instance_type is None else ", or remove instance_type")
            + ", or choose a lower precision (fewer bytes per token)")))
    if not errors:   # each target is reachable alone, but no batch meets both at once on one type
        c, op = min(points, key=lambda p: (p[1].tpot_s or 0) + p[1].ttft_s)
        assert op.tpot_s is not None   # both targets stated: a generating model
        errors.append(ConfigError(base, model=spec.name, message=(
            f"no instance meets ttft_p99_seconds {load.ttft_p99_seconds:g} and tpot_p99_seconds "
            f"{load.tpot_p99_seconds:g} together; closest: {where(c)} at TTFT {op.ttft_s:.3g} s, "
            f"TPOT {op.tpot_s * 1e3:.3g} ms: relax one of them")))
    return errors


def _ceil3(x: float, digits: int = 3) -> float:
    f: int = 10 ** digits
    return math.ceil(x * f) / f


# ----------------------------------------------------------------------------- advice

def infeasible_message(spec: ModelSpec, arch: Architecture, w: Workload, stack: StackConfig, cat: Catalog) -> str:
    """Why nothing fits, and what would, in numbers."""
    where = f"does not fit {spec.instance_type}" if spec.instance_type else \
        "fits no on-demand instance in the catalog"
    head = f"{spec.model} at {w.precision} with max_model_len {w.max_model_len} x concurrency {w.concurrency} {where}"
    if w.tensor_parallel is not None:
        head += f" at the forced tensor_parallel_size {w.tensor_parallel}"
    pool = [cat.instances[spec.instance_type]] if spec.instance_type else \
        [i for i in cat.instances.values() if i.purchase == "on-demand"]
    usable = [i for i in pool if cat.gpu_of(i).compute_capability >= cat.precisions[w.precision].min_compute_capability]
    if not usable:
        need = cat.precisions[w.precision].min_compute_capability
        return (f"{head}: {w.precision} needs GPU compute capability {need}, "
                f"{'this instance has' if spec.instance_type else 'none has'} it: choose fp16 or a newer GPU")
    biggest = max(usable, key=lambda i: (i.gpu_count * cat.gpu_of(i).memory_gib, -i.hourly_usd))
    layout = (_layouts(arch, w, biggest, 1) or [Layout(tensor_parallel=w.tensor_parallel or 1)])[0]
    gpu = cat.gpu_of(biggest)
    mem = estimate(arch, w, layout, gpu.memory_gib, cat)
    label = (f"on {biggest.name} ({biggest.gpu_count} x {gpu.name}, {mem.per_gpu_usable_gib:.1f} GiB usable per GPU) "
             "it needs" if spec.instance_type else f"the largest, {biggest.name} ({biggest.gpu_count} x {gpu.name}, "
             f"{mem.per_gpu_usable_gib:.1f} GiB usable per GPU), needs")
    what = [f"{label} {mem.per_gpu_required_gib:.1f} GiB per GPU at "
            + (f"TP {layout.tensor_parallel}" if w.runtime != "ollama" else f"a {layout.layer_split}-GPU layer split")
            + f" (weights {mem.per_gpu_weights_gib:.1f}, KV cache {mem.per_gpu_kv_cache_gib:.1f}, "
              f"overhead {mem.overhead_gib:.1f})"]
    fixes = []
    if spec.instance_type:      # first: what the catalog serves it on as configured, and its price
        free = cheapest(arch, w, stack.platform, stack, cat)
        if free is not None:
            fixes.append(f"remove instance_type: {free.instance.name} ({free.instance.gpu_count} x "
                         f"{cat.gpu_of(free.instance).name}, ${free.hourly_usd:.2f}/h) is the cheapest type that "
                         "serves it as configured")
    seqs = max_sequences(arch, w, layout, gpu.memory_gib, cat)
    if seqs >= 1:
        fixes.append(f"concurrency <= {seqs} on {biggest.name}")
    ctx = max_context(arch, w, layout, gpu.memory_gib, cat)
    if ctx >= 256:
        fixes.append(f"max_model_len <= {ctx} on {biggest.name}")
    runtime_precisions = [p for p, d in cat.precisions.items() if w.runtime in d.runtimes and p != w.precision]
    for p in sorted(runtime_precisions, key=lambda p: -_bits(cat, p)):
        if _bits(cat, p) >= _bits(cat, w.precision):
            continue
        c = cheapest(arch, _replace(w, precision=p), "ec2", stack, cat, spec.instance_type)
        if c is not None:
            fixes.append(f"precision {p} on {c.instance.name} (${c.hourly_usd:.2f}/h)")
            break
    if w.kv_cache_dtype == "auto" and "fp8" in cat.kv_dtypes and w.runtime in cat.kv_dtypes["fp8"].runtimes:
        c = cheapest(arch, _replace(w, kv_cache_dtype="fp8"), "ec2", stack, cat, spec.instance_type)
        if c is not None:
            fixes.append(f"kv_cache_dtype fp8 on {c.instance.name} (${c.hourly_usd:.2f}/h)")
    if w.tensor_parallel is not None:
        c = cheapest(arch, _replace(w, tensor_parallel=None), "ec2", stack, cat, spec.instance_type)
        if c is not None:
            fixes.append(f"tensor_parallel_size {c.layout.tensor_parallel} (or remove it) on {c.instance.name} "
                         f"(${c.hourly_usd:.2f}/h)")
    if stack.platform != "eks" and w.runtime != "ollama":
        c = cheapest(arch, w, "eks", stack, cat, spec.instance_type)
        if c is not None:
            fixes.append(f"platform eks, which spans nodes: {c.layout.pipeline_parallel} x {c.instance.name} "
                         f"in pipeline parallel (${c.hourly_usd:.2f}/h per replica)")
    if not spec.instance_type:      # capacity blocks are chosen only when forced: say so when one would do
        blocks = [i for i in cat.instances.values() if i.purchase != "on-demand"]
        c = _search(arch, w, blocks, 1, stack, cat) if blocks else None
        if c is not None:
            fixes.append(f"instance_type {c.instance.name} ({c.instance.purchase}, ${c.hourly_usd:.2f}/h), "
                         "which the planner picks only when forced")
    tail = "; what would fit: " + "; or ".join(fixes) if fixes else \
        "; nothing in the catalog fits even with less context or concurrency: choose a smaller model"
    return f"{head}: {what[0]}{tail}"


def _bits(cat: Catalog, precision: str) -> float:
    p = cat.precisions[precision]
    if p.kind == "gguf":
        assert p.default is not None   # catalog/quantization.yaml: every GGUF file type names its base GGML type
        block, size = cat.ggml_bytes_per_block[p.default]
        return 8 * size / block
    assert p.bits is not None   # catalog/quantization.yaml: every other precision states its bits
    return float(p.bits)


def _replace(w: Workload, **changes: Any) -> Workload:
    # dataclasses.replace, not asdict: asdict would turn a nested QuantLayout into an (unhashable) dict
    return dataclasses.replace(w, **changes)


def _hardware(instance: InstanceType, cat: Catalog) -> perf.Hardware:
    key = (instance.name, instance.gpu, instance.gpu_count, instance.interconnect)
    hw = _HARDWARE.get(key)
    if hw is None:
        hw = _HARDWARE[key] = perf.hardware_of(instance, cat)
    return hw


_HARDWARE: dict[tuple[str, str, int, str], perf.Hardware] = {}   # (name, GPU, count, interconnect)


@lru_cache(maxsize=8192)
def _estimate(arch: Architecture, w: Workload, layout: Layout, gpu_gib: float) -> Memory:
    return estimate(arch, w, layout, gpu_gib, catalog.load())


@lru_cache(maxsize=8192)
def _max_sequences(arch: Architecture, w: Workload, layout: Layout, gpu_gib: float) -> int:
    """max_sequences, remembered: the search asks the same question for every option and every piece of advice."""
    return max_sequences(arch, w, layout, gpu_gib, catalog.load())

"""From a model entry to a DeploymentPlan: which instance, how many GPUs, TP x PP, memory, cost.

The rule: on ec2 one instance serves one replica; the chosen instance type is the cheapest
on-demand one in the catalog on which some allowed tensor-parallel size fits (ties: fewer
GPUs); on that instance the replica uses the largest TP that fits (the GPUs are paid for, and
more TP means more KV-cache room and memory bandwidth per token). Pipeline parallelism spans
nodes only on eks, only when no single node can hold a replica. A forced instance_type is
checked, not trusted. When nothing fits, the error says what would, in numbers.

With a `load` (requests/s, prompt and output tokens, TTFT/TPOT targets) the planner also sizes the
fleet: on every instance type a replica fits, it finds the largest decode batch that meets the
targets (sizing/performance.py), the replicas that carry the load at TARGET_UTILIZATION, and picks
the type with the cheapest fleet. Replicas are never below the HA minimum (2 in prod); autoscaling
runs from there to BURST_FACTOR x the load.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Optional

from llm_platform import catalog
from llm_platform.catalog import Catalog, InstanceType
from llm_platform.settings.errors import ConfigError
from llm_platform.settings.schema import ModelSpec, StackConfig
from llm_platform.catalog.architecture import Architecture
from .memory import Layout, Memory, Workload, estimate, max_context, max_sequences
from .params import active_parameter_count, parameter_count
from . import performance as perf

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


@dataclass(frozen=True)
class Throughput:
    """The `throughput` object of a deployment (plan.py --json). Load-dependent fields are None
    without a `load`; decode fields are None for embedders (they prefill only)."""
    decode_tokens_per_s_single: Optional[float]
    decode_tokens_per_s_full: Optional[float]
    prefill_tokens_per_s: float
    ttft_seconds: Optional[float] = None
    tpot_seconds: Optional[float] = None
    batch_for_load: Optional[int] = None
    requests_per_s_per_replica: Optional[float] = None
    replicas_for_load: Optional[int] = None
    usd_per_million_output_tokens: Optional[float] = None

    def as_dict(self) -> dict:
        r = lambda x, n: None if x is None else round(x, n)  # noqa: E731
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
    max_concurrency_at_full_context: Optional[int]   # None for embedders: they keep no KV cache
    parameters: int
    active_parameters: int
    hourly_cost_usd: float          # one replica (all its nodes)
    volume_gib: int                 # root + model volume per node: weights, a staging copy, logs
    startup_seconds: int            # boot to healthy, for health-check grace periods
    trust_remote_code: bool
    revision: Optional[str]
    notes: tuple[str, ...] = field(default_factory=tuple)
    throughput: Optional[Throughput] = None

    @property
    def kv_cache_memory_bytes(self) -> int:
        """Per GPU: the KV pool the plan sized, passed to vLLM as --kv-cache-memory-bytes (0 for embedders)."""
        return self.memory.kv_cache_memory_bytes if self.task == "generate" and self.runtime != "ollama" else 0

    @property
    def runtime_memory(self) -> dict:
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

    def as_dict(self) -> dict:
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


def workload_of(spec: ModelSpec, cat: Optional[Catalog] = None) -> Workload:
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
    gpu = cat.gpus[stack.local.gpu]
    n = stack.local.gpu_count
    return InstanceType.model_construct(
        name=LOCAL, family=LOCAL, gpu=gpu.aws_name, gpu_count=n, gpu_memory_mib=gpu.aws_memory_mib,
        vcpus=1, memory_mib=1, network="", nvme_gb=0, hourly_usd=0.0, interconnect="PCIe" if n > 1 else "",
        purchase="on-demand", price_region="", price_source="")


def hourly_price(instance: InstanceType, stack: Optional[StackConfig]) -> float:
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


def evaluate(arch: Architecture, w: Workload, instance: InstanceType, nodes: int, stack: Optional[StackConfig],
             cat: Catalog) -> Optional[Candidate]:
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
            stack: Optional[StackConfig], cat: Catalog) -> Optional[Candidate]:
    """The cheapest feasible candidate: instances in price order, the first that fits wins (ties:
    fewer GPUs). Memory depends only on the GPU model and count, so each pair is sized once."""
    order = sorted(instances, key=lambda i: (hourly_price(i, stack), i.gpu_count, i.name))
    sized: dict[tuple[str, int], Optional[Candidate]] = {}
    for inst in order:
        key = (inst.gpu, inst.gpu_memory_mib, inst.gpu_count)
        if key not in sized:
            sized[key] = evaluate(arch, w, inst, nodes, stack, cat)
        if sized[key] is not None:
            c = sized[key]
            return Candidate(inst, c.layout, c.memory, hourly_price(inst, stack) * nodes)
    return None


def cheapest(arch: Architecture, w: Workload, platform: str, stack: Optional[StackConfig], cat: Catalog,
             forced: Optional[str] = None) -> Optional[Candidate]:
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


# ----------------------------------------------------------------------------- planning

def plan_model(spec: ModelSpec, index: int, stack: StackConfig, cat: Optional[Catalog] = None) -> DeploymentPlan:
    cat = cat or catalog.load()
    arch = architecture_of(spec, cat)
    w = workload_of(spec, cat)
    best = cheapest(arch, w, stack.platform, stack, cat, spec.instance_type)
    if best is None:
        forced = (".instance_type" if spec.instance_type
                  else ".tensor_parallel_size" if spec.tensor_parallel_size else "")
        raise PlanningError([ConfigError(f"llm-platform:models[{index}]" + forced,
                                         infeasible_message(spec, arch, w, stack, cat))])
    notes = []
    fleet = None
    if spec.load is not None:
        fleet = size_fleet(spec, index, arch, w, best, stack, cat)
        if fleet.candidate.instance.name != best.instance.name:
            notes.append(f"load: {fleet.replicas} x {fleet.candidate.instance.name} "
                         f"(${fleet.replicas * fleet.candidate.hourly_usd:.2f}/h) is the cheapest fleet for "
                         f"{spec.load.requests_per_second:g} req/s; {best.instance.name}, the cheapest type one replica "
                         f"fits, {fleet.alternative}")
        best = fleet.candidate
    if spec.instance_type:
        free = cheapest(arch, w, stack.platform, stack, cat)
        if free is not None and free.hourly_usd < best.hourly_usd:
            notes.append(f"forced {spec.instance_type} costs ${best.hourly_usd:.2f}/h per replica; "
                         f"{free.instance.name} would serve it for ${free.hourly_usd:.2f}/h")
    inst, layout, mem = best.instance, best.layout, best.memory
    gpu = cat.gpu_of(inst)
    if gpu.estimated:
        notes.append(f"{gpu.name}'s CUDA-visible memory is estimated, not measured: confirm with nvidia-smi")
    if inst.price_region:
        notes.append(f"{inst.name} price is for {inst.price_region}; set llm-platform:pricing.hourly_usd for yours")
    if spec.tensor_parallel_size and layout.tensor_parallel < inst.gpu_count:
        notes.append(f"tensor_parallel_size {layout.tensor_parallel} uses {layout.tensor_parallel} of "
                     f"{inst.name}'s {inst.gpu_count} GPUs per replica")
    if layout.pipeline_parallel > 1:
        notes.append(f"no single {inst.name} holds a replica: {layout.pipeline_parallel} nodes in pipeline parallel")
    if stack.region != cat.prices_region and not stack.pricing.hourly_usd:
        notes.append(f"prices are {cat.prices_region} on-demand list prices; {stack.region} differs")
    if spec.runtime == "vllm" and arch.task == "generate":
        notes.append(f"vLLM runs with --kv-cache-memory-bytes {mem.kv_cache_memory_bytes} per GPU: exactly "
                     f"{spec.concurrency} x {spec.max_model_len}-token sequences; "
                     f"{mem.outside_budget_gib:.1f} GiB per GPU for the CUDA context and NCCL, "
                     f"{mem.margin_gib:.1f} GiB stays free as margin")
    replicas_min = spec.autoscaling.min if spec.autoscaling else (spec.replicas or 1)
    replicas_max = spec.autoscaling.max if spec.autoscaling else replicas_min
    hw = perf.hardware_of(inst, cat)
    kv_bytes = cat.kv_dtypes[w.kv_cache_dtype].bytes
    r = perf.rates(arch, w.precision, kv_bytes, layout, hw, w.max_model_len, w.concurrency, w.max_num_batched_tokens,
                   w.quant_layout)
    throughput = Throughput(r.decode_tokens_per_s_single, r.decode_tokens_per_s_full, r.prefill_tokens_per_s)
    if fleet is not None:
        replicas_min, replicas_max, more = _replicas(spec, index, fleet, _ha_minimum(stack))
        notes += more
        op, load = fleet.operating, spec.load
        usd = (None if not load.output_tokens else
               replicas_min * best.hourly_usd / (load.requests_per_second * load.output_tokens * 3600) * 1e6)
        throughput = Throughput(r.decode_tokens_per_s_single, r.decode_tokens_per_s_full, r.prefill_tokens_per_s,
                                ttft_seconds=op.ttft_s, tpot_seconds=op.tpot_s, batch_for_load=op.batch,
                                requests_per_s_per_replica=op.requests_per_s, replicas_for_load=fleet.replicas,
                                usd_per_million_output_tokens=usd)
    gpus_per_node = layout.tensor_parallel * layout.layer_split
    startup = WARMUP_S + mem.weights_gib * (1 / DOWNLOAD_GIB_PER_S + 1 / VERIFY_GIB_PER_S + 1 / LOAD_GIB_PER_S)
    return DeploymentPlan(
        name=spec.name, model=spec.model, task=arch.task, runtime=spec.runtime, precision=spec.precision,
        kv_cache_dtype=spec.kv_cache_dtype, instance_type=inst.name, gpu_name=gpu.name,
        gpu_count=inst.gpu_count, gpu_memory_gib=gpu.memory_gib, nodes_per_replica=layout.pipeline_parallel,
        replicas_min=replicas_min, replicas_max=replicas_max,
        tensor_parallel_size=layout.tensor_parallel, pipeline_parallel_size=layout.pipeline_parallel,
        gpus_per_replica=gpus_per_node * layout.pipeline_parallel,
        max_model_len=spec.max_model_len, concurrency=spec.concurrency,
        max_num_batched_tokens=spec.max_num_batched_tokens, gpu_memory_utilization=spec.gpu_memory_utilization,
        memory=mem,
        max_concurrency_at_full_context=(max_sequences(arch, w, layout, gpu.memory_gib, cat)
                                         if arch.task == "generate" else None),
        parameters=parameter_count(arch), active_parameters=active_parameter_count(arch),
        hourly_cost_usd=best.hourly_usd,
        volume_gib=int(math.ceil(mem.weights_gib / layout.pipeline_parallel * 2 + ROOT_VOLUME_GIB)),
        startup_seconds=int(math.ceil(startup / 10) * 10),
        trust_remote_code=spec.trust_remote_code, revision=spec.revision, notes=tuple(notes),
        throughput=throughput,
    )


def plan_stack(stack: StackConfig, cat: Optional[Catalog] = None) -> list[DeploymentPlan]:
    """One plan per model; every model that cannot be planned is reported, not just the first."""
    plans, errors = [], []
    for i, spec in enumerate(stack.models):
        try:
            plans.append(plan_model(spec, i, stack, cat))
        except PlanningError as exc:
            errors += exc.errors
    if errors:
        raise PlanningError(errors)
    return plans


# ----------------------------------------------------------------------------- capacity planning

@dataclass(frozen=True)
class Fleet:
    candidate: Candidate
    operating: perf.Operating
    replicas: int                 # what the load needs at TARGET_UTILIZATION (before the HA minimum)
    alternative: str = ""         # what the memory-cheapest type would have needed, for the note


def _ha_minimum(stack: StackConfig) -> int:
    return 2 if stack.environment == "prod" else 1


def _fleet_on(c: Candidate, spec: ModelSpec, arch: Architecture, w: Workload, cat: Catalog):
    load = spec.load
    hw = perf.hardware_of(c.instance, cat)
    op = perf.best_operating_point(arch, w.precision, cat.kv_dtypes[w.kv_cache_dtype].bytes, c.layout, hw,
                                   w.concurrency, load.prompt_tokens, load.output_tokens, w.max_num_batched_tokens,
                                   TARGET_UTILIZATION, load.ttft_p99_seconds, load.tpot_p99_seconds, w.quant_layout)
    if op is None:
        return None
    return op, max(1, math.ceil(load.requests_per_second / op.requests_per_s - 1e-9))


def size_fleet(spec: ModelSpec, index: int, arch: Architecture, w: Workload, best: Candidate,
               stack: StackConfig, cat: Catalog) -> Fleet:
    """The instance type, decode batch and replica count that serve `spec.load` cheapest.

    Every type one replica fits is a candidate (only the forced one if `instance_type` is set; only
    the memory planner's choice when a replica spans nodes); each gets its largest batch that meets
    the latency targets; the cheapest fleet (replicas, never below the HA minimum, x hourly price) wins,
    ties to fewer GPUs."""
    ha = _ha_minimum(stack)
    if spec.instance_type or best.layout.pipeline_parallel > 1 or stack.platform == "docker":
        pool = [best]
    else:
        pool, seen = [], {}
        for inst in sorted((i for i in cat.instances.values() if i.purchase == "on-demand"),
                           key=lambda i: (hourly_price(i, stack), i.gpu_count, i.name)):
            key = (inst.gpu, inst.gpu_memory_mib, inst.gpu_count)
            if key not in seen:
                seen[key] = evaluate(arch, w, inst, 1, stack, cat)
            if seen[key] is not None:
                c = seen[key]
                pool.append(Candidate(inst, c.layout, c.memory, hourly_price(inst, stack)))
    options = []
    for c in pool:
        sized = _fleet_on(c, spec, arch, w, cat)
        if sized is not None:
            op, n = sized
            options.append((max(n, ha) * c.hourly_usd, c.instance.gpu_count, c.hourly_usd, c.instance.name, c, op, n))
    if not options:
        raise PlanningError(latency_errors(spec, index, arch, w, pool, cat))
    options.sort(key=lambda o: o[:4])
    _, _, _, _, c, op, n = options[0]
    alt = next((o for o in options if o[3] == best.instance.name), None)
    alternative = (f"would need {max(alt[6], ha)} (${alt[0]:.2f}/h)" if alt else "cannot meet the latency targets")
    return Fleet(c, op, n, alternative)


def _replicas(spec: ModelSpec, index: int, fleet: Fleet, ha: int) -> tuple[int, int, list[str]]:
    """(min, max, notes): derived from the load, or the stated ones checked against it."""
    need, base = fleet.replicas, f"llm-platform:models[{index}]"
    rps = spec.load.requests_per_second
    per = fleet.operating.requests_per_s
    why = (f"{rps:g} req/s at {per:.3g} req/s per replica (batch {fleet.operating.batch}, "
           f"{TARGET_UTILIZATION:.0%} utilization) needs {need}")
    if spec.replicas is not None:
        if spec.replicas < need:
            raise PlanningError([ConfigError(f"{base}.replicas", f"{why} replicas on {fleet.candidate.instance.name}: "
                                             f"raise replicas to {need}, or remove it and let the load decide")])
        return spec.replicas, spec.replicas, []
    if spec.autoscaling is not None:
        if spec.autoscaling.max < need:
            raise PlanningError([ConfigError(f"{base}.autoscaling.max", f"{why} replicas on "
                                             f"{fleet.candidate.instance.name}: raise autoscaling.max to at least "
                                             f"{need}, or remove autoscaling and let the load decide")])
        notes = [] if spec.autoscaling.min >= need else [
            f"autoscaling.min {spec.autoscaling.min} is below the {need} replicas the stated load needs: "
            f"until it scales out, TTFT and TPOT exceed their targets"]
        return spec.autoscaling.min, spec.autoscaling.max, notes
    low = max(need, ha)
    high = max(low + 1, math.ceil(need * BURST_FACTOR))
    return low, high, [f"replicas from load: {why}; HA minimum {ha}; autoscaling {low}-{high} "
                       f"({BURST_FACTOR:g}x the load)"]


def latency_errors(spec: ModelSpec, index: int, arch: Architecture, w: Workload, pool: list[Candidate],
                   cat: Catalog) -> list[ConfigError]:
    """Why no instance meets the latency targets, and what each target could be, on which instance."""
    load, base = spec.load, f"llm-platform:models[{index}].load"
    kv = cat.kv_dtypes[w.kv_cache_dtype].bytes
    points = []
    for c in pool:
        hw = perf.hardware_of(c.instance, cat)
        op = perf.operating_point(arch, w.precision, kv, c.layout, hw, 1, load.prompt_tokens, load.output_tokens,
                                  w.max_num_batched_tokens, TARGET_UTILIZATION, w.quant_layout)
        points.append((c, op))
    first = points[0]
    errors = []
    where = lambda c: (f"{c.instance.name} ({c.layout.gpus} x {cat.gpu_of(c.instance).name}"  # noqa: E731
                       + (f", TP {c.layout.tensor_parallel}" if w.runtime != "ollama" else "") + f", ${c.hourly_usd:.2f}/h)")
    if load.ttft_p99_seconds is not None and min(op.ttft_s for _, op in points) > load.ttft_p99_seconds:
        c, op = min(points, key=lambda p: p[1].ttft_s)
        errors.append(ConfigError(f"{base}.ttft_p99_seconds", (
            f"{load.ttft_p99_seconds:g} s cannot be met for {load.prompt_tokens}-token prompts at {w.precision}: "
            f"the first token takes {first[1].ttft_s:.3g} s on {where(first[0])}; the fastest is {op.ttft_s:.3g} s "
            f"on {where(c)}: raise ttft_p99_seconds to at least {_ceil3(op.ttft_s)}"
            + ("" if spec.instance_type is None else ", or remove instance_type") + ", or shorten prompts")))
    if (load.tpot_p99_seconds is not None and first[1].tpot_s is not None
            and min(op.tpot_s for _, op in points) > load.tpot_p99_seconds):
        c, op = min(points, key=lambda p: p[1].tpot_s)
        errors.append(ConfigError(f"{base}.tpot_p99_seconds", (
            f"{load.tpot_p99_seconds:g} s per token cannot be met at {w.precision}: one sequence decodes at "
            f"{first[1].tpot_s * 1e3:.3g} ms per token on {where(first[0])}; the fastest is {op.tpot_s * 1e3:.3g} ms "
            f"on {where(c)}: raise tpot_p99_seconds to at least {_ceil3(op.tpot_s, 4)}"
            + ("" if spec.instance_type is None else ", or remove instance_type")
            + ", or choose a lower precision (fewer bytes per token)")))
    if not errors:   # each target is reachable alone, but no batch meets both at once on one type
        c, op = min(points, key=lambda p: (p[1].tpot_s or 0) + p[1].ttft_s)
        errors.append(ConfigError(base, (
            f"no instance meets ttft_p99_seconds {load.ttft_p99_seconds:g} and tpot_p99_seconds "
            f"{load.tpot_p99_seconds:g} together; closest: {where(c)} at TTFT {op.ttft_s:.3g} s, "
            f"TPOT {op.tpot_s * 1e3:.3g} ms: relax one of them")))
    return errors


def _ceil3(x: float, digits: int = 3) -> float:
    f = 10 ** digits
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
    what = [f"the largest, {biggest.name} ({biggest.gpu_count} x {gpu.name}, {mem.per_gpu_usable_gib:.1f} GiB usable "
            f"per GPU), needs {mem.per_gpu_required_gib:.1f} GiB per GPU at "
            + (f"TP {layout.tensor_parallel}" if w.runtime != "ollama" else f"a {layout.layer_split}-GPU layer split")
            + f" (weights {mem.per_gpu_weights_gib:.1f}, KV cache {mem.per_gpu_kv_cache_gib:.1f}, "
              f"overhead {mem.overhead_gib:.1f})"]
    fixes = []
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
    tail = "; what would fit: " + "; or ".join(fixes) if fixes else \
        "; nothing in the catalog fits even with less context or concurrency: choose a smaller model"
    return f"{head}: {what[0]}{tail}"


def _bits(cat: Catalog, precision: str) -> float:
    p = cat.precisions[precision]
    if p.kind == "gguf":
        block, size = cat.ggml_bytes_per_block[p.default]
        return 8 * size / block
    return float(p.bits)


def _replace(w: Workload, **changes) -> Workload:
    # dataclasses.replace, not asdict: asdict would turn a nested QuantLayout into an (unhashable) dict
    return dataclasses.replace(w, **changes)

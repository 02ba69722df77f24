"""Fallback instance types: where a deployment can still run, within its SLO, when its chosen type is scarce.

On-demand GPU capacity (p5, g6e, g7e) is often unavailable in an AZ for hours. A group that can launch only
one type waits; a group with checked alternatives keeps serving. Each fallback is checked exactly like the
chosen type, with the planner's own search (`planner.explore`) at the plan's final workload (precision, KV
cache dtype and the chosen concurrency: the flags the replica runs with): compute capability, memory at the
model's context, and with a `load` a batch that meets the TTFT/TPOT targets at TARGET_UTILIZATION. A type that
fits but misses the targets is not a fallback.

Capacity units: a slower fallback needs more replicas for the same load. The chosen type's replica counts
UNITS_PER_REPLICA capacity units; a fallback's replica counts floor(UNITS_PER_REPLICA x its throughput
relative to the chosen type), never more than the chosen type's (a faster fallback must not thin out the HA
minimum). EC2 weighted capacity and the group's min/desired/max in units then keep the fleet's throughput
at or above what the plan needs whichever types launch. Types below 1/UNITS_PER_REPLICA of the chosen
throughput are not fallbacks (a whole unit would overstate them).

Order: by price for the stated load (hourly price per capacity unit), ties to the cheaper instance; the
chosen type always comes first. Diversity: one type per GPU configuration (GPU model x count), the cheapest
size, plus the cheapest other size of the chosen configuration (a separate EC2 capacity pool).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from llm_platform.catalog import Catalog, InstanceType
from llm_platform.catalog.architecture import Architecture
from llm_platform.settings.schema import ModelSpec, StackConfig

from . import performance as perf
from . import planner
from .memory import Layout, Memory, Workload, max_sequences
from .startup import StartupEstimate, estimate

UNITS_PER_REPLICA = 10


@dataclass(frozen=True)
class Fallback:
    instance_type: str
    gpu_name: str
    gpu_count: int
    gpu_memory_gib: float
    tensor_parallel_size: int
    pipeline_parallel_size: int
    gpus_per_replica: int
    memory: Memory
    hourly_cost_usd: float                       # one replica
    max_concurrency_at_full_context: int | None
    relative_throughput: float                   # per replica, vs the chosen type (load: req/s; else tokens/s)
    weighted_capacity: int                       # capacity units one replica of this type counts
    requests_per_s_per_replica: float | None = None
    batch_for_load: int | None = None
    ttft_seconds: float | None = None
    tpot_seconds: float | None = None
    replicas_for_load: int | None = None      # this type alone, at TARGET_UTILIZATION

    @property
    def usd_per_unit_hour(self) -> float:
        return self.hourly_cost_usd / self.weighted_capacity

    def as_dict(self) -> dict[str, Any]:
        m = self.memory
        r = _rounded
        return {"instance_type": self.instance_type,
                "gpu": {"name": self.gpu_name, "count": self.gpu_count, "memory_gib": round(self.gpu_memory_gib, 2)},
                "tensor_parallel_size": self.tensor_parallel_size,
                "pipeline_parallel_size": self.pipeline_parallel_size, "gpus_per_replica": self.gpus_per_replica,
                "per_gpu_required_gib": round(m.per_gpu_required_gib, 2),
                "per_gpu_usable_gib": round(m.per_gpu_usable_gib, 2),
                "hourly_cost_per_replica_usd": round(self.hourly_cost_usd, 4),
                "max_concurrency_at_full_context": self.max_concurrency_at_full_context,
                "requests_per_s_per_replica": r(self.requests_per_s_per_replica, 3),
                "batch_for_load": self.batch_for_load, "ttft_seconds": r(self.ttft_seconds, 3),
                "tpot_seconds": r(self.tpot_seconds, 4), "replicas_for_load": self.replicas_for_load,
                "relative_throughput": round(self.relative_throughput, 3),
                "weighted_capacity": self.weighted_capacity}


def _no_fallbacks_reason(spec: ModelSpec, plan: planner.DeploymentPlan, stack: StackConfig) -> str | None:
    cap = spec.capacity
    if stack.platform == "docker":
        return "platform docker runs on this workstation's GPUs"
    if cap is not None and not cap.fallbacks:
        return "capacity.fallbacks is false: the group launches only the chosen type"
    if cap is not None and cap.reservations is not None and cap.reservations.capacity_block:
        return "capacity.reservations is a Capacity Block: instances launch only into the reserved block"
    if spec.instance_type:
        return f"instance_type forces {spec.instance_type}: remove it to let the plan add fallback types"
    if plan.nodes_per_replica > 1:
        return (f"a replica spans {plan.nodes_per_replica} nodes (a fixed-size group): another type would need "
                "another layout")
    return None


def _rounded(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def _throughput(arch: Architecture, w: Workload, layout: Layout, instance: InstanceType, cat: Catalog,
                embed: bool) -> float:
    hw = perf.hardware_of(instance, cat)
    r = perf.rates(arch, w.precision, cat.kv_dtypes[w.kv_cache_dtype].bytes, layout, hw, w.max_model_len,
                   w.concurrency, w.max_num_batched_tokens)
    return r.prefill_tokens_per_s if embed or r.decode_tokens_per_s_full is None else r.decode_tokens_per_s_full


def find(spec: ModelSpec, plan: planner.DeploymentPlan, stack: StackConfig,
         cat: Catalog) -> tuple[tuple[Fallback, ...], str | None]:
    """(fallbacks in price order, None) or ((), why there are none).

    Each type is searched with the planner's own `explore` at the plan's final workload (its precision, KV
    cache dtype and concurrency: the runtime flags the replica runs with), so memory, compute capability and,
    with a load, the latency targets are checked exactly as for the chosen type."""
    why = _no_fallbacks_reason(spec, plan, stack)
    if why:
        return (), why
    arch = planner.architecture_of(spec, cat)
    w = dataclasses.replace(planner.workload_of(spec, cat), kv_cache_dtype=plan.kv_cache_dtype,
                            concurrency=plan.concurrency)
    if stack.platform == "eks" and plan.runtime != "ollama":
        # one pod template serves every type of the pool: a fallback must run that pod (same TP and GPUs)
        w = dataclasses.replace(w, tensor_parallel=plan.tensor_parallel_size)
    embed = arch.task == "embed"
    chosen = cat.instances[plan.instance_type]
    own = planner.evaluate(arch, w, chosen, plan.nodes_per_replica, stack, cat)   # the plan's own layout
    assert own is not None, f"{plan.name}: the planner's own choice must fit"
    base_rps = plan.throughput.requests_per_s_per_replica if plan.throughput else None
    base_tps = _throughput(arch, w, own.layout, chosen, cat, embed)
    pool = sorted((i for i in cat.instances.values() if i.purchase == "on-demand" and i.name != chosen.name),
                  key=lambda i: (planner.hourly_price(i, stack), i.gpu_count, i.name))
    picked: set[tuple[str, int, int]] = set()
    found: list[Fallback] = []
    layouts: dict[str, tuple[Layout, float]] = {}
    fit_but_slow: list[str] = []
    for inst in pool:
        key = (inst.gpu, inst.gpu_memory_mib, inst.gpu_count)
        if key in picked:
            continue
        options = planner.explore(spec, arch, w, stack, cat, instances=[inst], kv=(plan.kv_cache_dtype,),
                                  concurrency=plan.concurrency, bounded=False)
        if not options:
            if spec.load is not None and planner.evaluate(arch, w, inst, 1, stack, cat) is not None:
                fit_but_slow.append(inst.name)
            continue
        best = options[0]
        c, op = best.candidate, best.operating
        if spec.load is not None and op is not None and base_rps:
            rel = op.requests_per_s / base_rps
        else:
            rel = _throughput(arch, w, c.layout, inst, cat, embed) / base_tps if base_tps else 0.0
        weight = min(UNITS_PER_REPLICA, math.floor(UNITS_PER_REPLICA * rel + 1e-9))
        if weight < 1:
            fit_but_slow.append(inst.name)
            continue
        picked.add(key)
        gpu = cat.gpu_of(inst)
        layouts[inst.name] = (c.layout, gpu.memory_gib)
        found.append(Fallback(
            instance_type=inst.name, gpu_name=gpu.name, gpu_count=inst.gpu_count, gpu_memory_gib=gpu.memory_gib,
            tensor_parallel_size=c.layout.tensor_parallel, pipeline_parallel_size=c.layout.pipeline_parallel,
            gpus_per_replica=c.layout.tensor_parallel * c.layout.layer_split * c.layout.pipeline_parallel,
            memory=c.memory, hourly_cost_usd=c.hourly_usd,
            max_concurrency_at_full_context=None,       # filled in below for the kept ones (a search each)
            relative_throughput=rel, weighted_capacity=weight,
            requests_per_s_per_replica=op.requests_per_s if op else None, batch_for_load=op.batch if op else None,
            ttft_seconds=op.ttft_s if op else None, tpot_seconds=op.tpot_s if op else None,
            replicas_for_load=best.replicas_for_load))
    found.sort(key=lambda f: (f.usd_per_unit_hour, f.hourly_cost_usd, f.instance_type))
    limit = spec.capacity.max_fallbacks if spec.capacity is not None else 3
    found = [f if embed else dataclasses.replace(
        f, max_concurrency_at_full_context=max_sequences(arch, w, layouts[f.instance_type][0],
                                                         layouts[f.instance_type][1], cat))
        for f in found[:limit]]
    if found:
        return tuple(found), None
    if fit_but_slow:
        return (), (f"{', '.join(fit_but_slow[:4])} fit in memory but miss the latency targets or are under "
                    f"1/{UNITS_PER_REPLICA} of the chosen type's throughput")
    return (), "no other on-demand type in the catalog fits this model at its context and concurrency"


def variant(plan: planner.DeploymentPlan, fb: Fallback) -> planner.DeploymentPlan:
    """The plan as it runs on a fallback type: what its own launch template (TP, runtime flags, volume) needs."""
    return dataclasses.replace(
        plan, instance_type=fb.instance_type, gpu_name=fb.gpu_name, gpu_count=fb.gpu_count,
        gpu_memory_gib=fb.gpu_memory_gib, tensor_parallel_size=fb.tensor_parallel_size,
        pipeline_parallel_size=fb.pipeline_parallel_size, gpus_per_replica=fb.gpus_per_replica, memory=fb.memory,
        max_concurrency_at_full_context=fb.max_concurrency_at_full_context, hourly_cost_usd=fb.hourly_cost_usd,
        volume_gib=int(math.ceil(fb.memory.weights_gib * 2 + planner.ROOT_VOLUME_GIB)), fallbacks=(),
        notes=plan.notes + (f"fallback of {plan.instance_type}",))


def attach(plan: planner.DeploymentPlan, spec: ModelSpec, stack: StackConfig,
           cat: Catalog) -> planner.DeploymentPlan:
    """The plan with its fallbacks (or why none) and its cold / warm-pool / snapshot / cached start times."""
    fallbacks, why = find(spec, plan, stack, cat)
    cap = spec.capacity
    startup: StartupEstimate = estimate(plan.memory.weights_gib, plan.nodes_per_replica, stack.platform,
                                        warm_pool=bool(cap and cap.warm_pool),
                                        snapshot=bool(cap and cap.model_snapshot_id),
                                        fast_restore=bool(cap and cap.fast_snapshot_restore))
    types = ", ".join(f"{f.instance_type} (TP {f.tensor_parallel_size}, {f.weighted_capacity} units)"
                      for f in fallbacks)
    starts = f"cold ~{startup.cold_seconds} s" + (
        f", from the warm pool ~{startup.warm_pool_seconds} s" if startup.warm_pool_seconds else "") + (
        f", from the model snapshot ~{startup.snapshot_seconds} s" if startup.snapshot_seconds else "") + (
        f", weights cached on the node ~{startup.cached_seconds} s")
    notes = plan.notes + ((f"capacity: {plan.instance_type} ({UNITS_PER_REPLICA} units) first, then {types}; "
                           f"starts {starts}") if fallbacks else f"capacity: {plan.instance_type} only ({why}); "
                                                                 f"starts {starts}",)
    if startup.snapshot_seconds is not None and startup.snapshot_seconds >= startup.cold_seconds:
        notes += (f"model snapshot without Fast Snapshot Restore starts in ~{startup.snapshot_seconds} s, no faster "
                  f"than downloading ({startup.cold_seconds} s): set capacity.fast_snapshot_restore",)
    return dataclasses.replace(plan, fallbacks=fallbacks, fallbacks_reason=why, startup=startup, notes=notes)


def capacity_units(plan: planner.DeploymentPlan) -> dict[str, Any]:
    """The group's size in capacity units (EC2 weighted capacity): min, max and per type."""
    weights = {plan.instance_type: UNITS_PER_REPLICA, **{f.instance_type: f.weighted_capacity for f in plan.fallbacks}}
    return {"min": plan.replicas_min * UNITS_PER_REPLICA, "max": plan.replicas_max * UNITS_PER_REPLICA,
            "weights": weights}


def replicas_max_any_type(plan: planner.DeploymentPlan) -> int:
    """Replicas the autoscaler may reach so that, whichever types the nodes are, the fleet can still carry the
    plan's maximum: replicas_max chosen-type replicas' worth of capacity units, on the slowest listed type."""
    slowest = min([UNITS_PER_REPLICA, *(f.weighted_capacity for f in plan.fallbacks)])
    return int(math.ceil(plan.replicas_max * UNITS_PER_REPLICA / slowest))

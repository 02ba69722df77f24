"""Fallback instance types and start-up times in the plan (sizing/fallbacks.py, sizing/startup.py): every
fallback is checked like the chosen type (memory, compute capability, latency targets), ordered by price per
unit of capacity, weighted so the fleet holds the stated load; groups without fallbacks say why."""
from __future__ import annotations

import copy
import dataclasses
import json
import math

import pytest

from llm_platform import catalog
from llm_platform.settings import ConfigErrors, parse, read_stack_file
from llm_platform.sizing import performance as perf
from llm_platform.sizing.fallbacks import UNITS_PER_REPLICA, capacity_units, variant
from llm_platform.sizing.memory import Layout, estimate
from llm_platform.sizing.planner import TARGET_UTILIZATION, architecture_of, plan_stack, workload_of
from tests.conftest import MINIMAL, ROOT, prod_config


@pytest.fixture(scope="module")
def cat():
    return catalog.load()


@pytest.fixture(scope="module")
def prod(cat):
    stack = parse(read_stack_file(ROOT / "Pulumi.prod.yaml"))
    return stack, plan_stack(stack, cat)


@pytest.fixture(scope="module")
def eks(cat):
    stack = parse(read_stack_file(ROOT / "Pulumi.eks.yaml"))
    return stack, plan_stack(stack, cat)


def test_every_prod_deployment_has_a_checked_fallback(prod):
    _, plans = prod
    for p in plans:
        assert p.fallbacks, f"{p.name}: {p.fallbacks_reason}"
        assert p.fallbacks_reason is None
        assert p.instance_type not in {f.instance_type for f in p.fallbacks}
        assert len({f.instance_type for f in p.fallbacks}) == len(p.fallbacks)


def test_each_fallback_fits_in_memory_as_the_planner_computes_it(prod, cat):
    stack, plans = prod
    for spec, p in zip(stack.models, plans, strict=True):
        # the replica's runtime flags: the plan's chosen KV dtype and concurrency, on every type
        arch = architecture_of(spec, cat)
        w = dataclasses.replace(workload_of(spec, cat), kv_cache_dtype=p.kv_cache_dtype, concurrency=p.concurrency)
        for f in p.fallbacks:
            inst = cat.instances[f.instance_type]
            gpu = cat.gpu_of(inst)
            assert gpu.compute_capability >= cat.precisions[spec.precision].min_compute_capability
            mem = estimate(arch, w, Layout(tensor_parallel=f.tensor_parallel_size), gpu.memory_gib, cat)
            assert mem.fits and f.memory.per_gpu_required_gib == pytest.approx(mem.per_gpu_required_gib)
            assert f.memory.per_gpu_required_gib <= f.memory.per_gpu_usable_gib
            assert f.tensor_parallel_size <= inst.gpu_count


def test_each_fallback_meets_the_latency_targets_and_the_load(prod, cat):
    stack, plans = prod
    for spec, p in zip(stack.models, plans, strict=True):
        load = spec.load
        for f in p.fallbacks:
            assert f.ttft_seconds <= load.ttft_p99_seconds
            if load.tpot_p99_seconds is not None:
                assert f.tpot_seconds <= load.tpot_p99_seconds
            # the fallback alone carries the stated load at the planner's utilization
            assert f.replicas_for_load * f.requests_per_s_per_replica >= load.requests_per_second - 1e-9
            assert f.requests_per_s_per_replica == pytest.approx(
                f.relative_throughput * p.throughput.requests_per_s_per_replica)


def test_weights_never_overstate_a_fallback_and_units_hold_the_load(prod):
    """Whatever mix of types launches, the capacity units the group keeps are worth at least the replicas
    the plan needs of the chosen type."""
    stack, plans = prod
    for spec, p in zip(stack.models, plans, strict=True):
        units = capacity_units(p)
        assert units["weights"][p.instance_type] == UNITS_PER_REPLICA
        assert units["min"] == p.replicas_min * UNITS_PER_REPLICA
        for f in p.fallbacks:
            w = units["weights"][f.instance_type]
            assert 1 <= w <= UNITS_PER_REPLICA and w <= UNITS_PER_REPLICA * f.relative_throughput + 1e-9
            # a group made only of this fallback, filled to the units of replicas_min chosen replicas
            n = math.ceil(units["min"] / w)
            served = n * f.requests_per_s_per_replica
            assert served >= p.replicas_min * p.throughput.requests_per_s_per_replica - 1e-9
            assert served * TARGET_UTILIZATION >= 0   # rates are already at target utilization
            assert served >= spec.load.requests_per_second - 1e-9


def test_fallbacks_are_in_price_order_per_capacity_unit(prod):
    _, plans = prod
    for p in plans:
        costs = [f.hourly_cost_usd / f.weighted_capacity for f in p.fallbacks]
        assert costs == sorted(costs), p.name


def test_a_slower_fallback_counts_fewer_units(prod):
    _, plans = prod
    qwen = next(p for p in plans if p.name == "qwen-coder-32b")
    slow = [f for f in qwen.fallbacks if f.relative_throughput < 1]
    assert slow, "qwen-coder-32b has a slower fallback in the shipped catalog"
    for f in slow:
        assert f.weighted_capacity == math.floor(UNITS_PER_REPLICA * f.relative_throughput + 1e-9) < UNITS_PER_REPLICA
        assert f.replicas_for_load >= qwen.throughput.replicas_for_load


def test_a_variant_plan_carries_the_fallbacks_own_tp_and_volume(prod):
    _, plans = prod
    qwen = next(p for p in plans if p.name == "qwen-coder-32b")
    f = next(f for f in qwen.fallbacks if f.tensor_parallel_size != qwen.tensor_parallel_size)
    v = variant(qwen, f)
    assert (v.instance_type, v.tensor_parallel_size, v.gpu_count) == (f.instance_type, f.tensor_parallel_size,
                                                                       f.gpu_count)
    assert v.memory == f.memory and v.fallbacks == () and v.name == qwen.name


def test_eks_fallbacks_run_the_same_pod(eks, cat):
    _, plans = eks
    for p in plans:
        for f in p.fallbacks:
            assert f.tensor_parallel_size == p.tensor_parallel_size, (p.name, f.instance_type)
            assert cat.instances[f.instance_type].gpu_count >= p.gpus_per_node


def test_a_forced_type_or_a_multi_node_replica_says_why_there_is_no_fallback(eks):
    _, plans = eks
    big = next(p for p in plans if p.name == "llama-405b")
    assert big.fallbacks == () and "instance_type forces p5.48xlarge" in big.fallbacks_reason


@pytest.mark.parametrize("capacity, words", [
    ({"fallbacks": False}, "capacity.fallbacks is false"),
    ({"reservations": {"ids": ["cr-0123456789abcdef0"], "preference": "capacity-reservations-only",
                       "capacity_block": True}}, "Capacity Block"),
])
def test_fallbacks_can_be_turned_off_and_the_plan_says_so(capacity, words, cat):
    raw = prod_config()
    raw["llm-platform:models"][0]["capacity"] = capacity
    p = plan_stack(parse(raw), cat)[0]
    assert p.fallbacks == () and words in p.fallbacks_reason


def test_max_fallbacks_limits_the_list(cat):
    raw = prod_config()
    raw["llm-platform:models"][0]["capacity"] = {"max_fallbacks": 1}
    assert len(plan_stack(parse(raw), cat)[0].fallbacks) == 1


def test_without_a_load_fallbacks_are_weighted_by_token_throughput(cat):
    stack = parse(copy.deepcopy(MINIMAL))
    p = plan_stack(stack, cat)[0]
    assert p.fallbacks
    arch = architecture_of(stack.models[0], cat)
    w = dataclasses.replace(workload_of(stack.models[0], cat), kv_cache_dtype=p.kv_cache_dtype,
                            concurrency=p.concurrency)
    kv = cat.kv_dtypes[w.kv_cache_dtype].bytes

    def tps(itype, tp):
        r = perf.rates(arch, w.precision, kv, Layout(tensor_parallel=tp), perf.hardware_of(cat.instances[itype], cat),
                       w.max_model_len, w.concurrency, w.max_num_batched_tokens)
        return r.decode_tokens_per_s_full
    base = tps(p.instance_type, p.tensor_parallel_size)
    for f in p.fallbacks:
        assert f.relative_throughput == pytest.approx(tps(f.instance_type, f.tensor_parallel_size) / base)


# ----------------------------------------------------------------------------- start-up times

def test_startup_distinguishes_cold_warm_pool_and_cached(prod):
    _, plans = prod
    for p in plans:
        s = p.startup
        assert s.cached_seconds < s.warm_pool_seconds < s.cold_seconds, p.name
        assert s.cold_seconds >= p.startup_seconds        # boot and image pull on top of the data path
        assert s.snapshot_seconds is None                 # no snapshot configured in the shipped stack


def test_bigger_models_start_slower_in_every_mode(prod):
    _, plans = prod
    small = next(p for p in plans if p.name == "llama-8b").startup
    big = next(p for p in plans if p.name == "llama-70b").startup
    for k in ("cold_seconds", "warm_pool_seconds", "cached_seconds"):
        assert getattr(big, k) > getattr(small, k)


def test_eks_has_no_warm_pool_but_a_cache(eks):
    _, plans = eks
    for p in plans:
        assert p.startup.warm_pool_seconds is None and p.startup.cached_seconds < p.startup.cold_seconds


def test_a_model_snapshot_with_fast_restore_beats_a_download_and_without_it_the_plan_says_so(cat):
    raw = prod_config()
    raw["llm-platform:models"][0]["capacity"] = {"model_snapshot_id": "snap-0123456789abcdef0",
                                                 "fast_snapshot_restore": True}
    fast = plan_stack(parse(raw), cat)[0]
    assert fast.startup.snapshot_seconds < fast.startup.cold_seconds
    raw["llm-platform:models"][0]["capacity"] = {"model_snapshot_id": "snap-0123456789abcdef0"}
    lazy = plan_stack(parse(raw), cat)[0]
    assert lazy.startup.snapshot_seconds > fast.startup.snapshot_seconds
    assert (lazy.startup.snapshot_seconds < lazy.startup.cold_seconds
            or any("set capacity.fast_snapshot_restore" in n for n in lazy.notes))


# ----------------------------------------------------------------------------- config

@pytest.mark.parametrize("capacity, path, words", [
    ({"reservations": {"ids": ["cr-1"]}}, "capacity.reservations.ids", "not capacity reservation ids"),
    ({"reservations": {"ids": ["cr-0123456789abcdef0"], "capacity_block": True}}, "capacity.reservations.preference",
     "capacity-reservations-only"),
    ({"model_snapshot_id": "ami-123"}, "capacity.model_snapshot_id", "snapshot"),
    ({"max_fallbacks": 0}, "capacity.max_fallbacks", "greater than or equal to 1"),
    ({"warm_pools": True}, "capacity.warm_pools", ""),
    ({"fast_snapshot_restore": True}, "capacity.fast_snapshot_restore", "model_snapshot_id"),
])
def test_capacity_errors_name_the_key_path(capacity, path, words):
    raw = prod_config()
    raw["llm-platform:models"][0]["capacity"] = capacity
    with pytest.raises(ConfigErrors) as exc:
        parse(raw)
    errs = {e.path: e.message for e in exc.value.errors}
    assert f"llm-platform:models[0].{path}" in errs, errs
    assert words in errs[f"llm-platform:models[0].{path}"]


def test_warm_pool_and_snapshot_are_ec2_only():
    raw = read_stack_file(ROOT / "Pulumi.eks.yaml")
    raw["llm-platform:models"][0]["capacity"] = {"warm_pool": True, "model_snapshot_id": "snap-0123456789abcdef0"}
    with pytest.raises(ConfigErrors) as exc:
        parse(raw)
    paths = {e.path for e in exc.value.errors}
    assert {"llm-platform:models[0].capacity.warm_pool", "llm-platform:models[0].capacity.model_snapshot_id"} <= paths


def test_warm_pool_defaults_on_in_prod_only():
    assert parse(prod_config()).models[0].capacity.warm_pool is True
    assert parse(copy.deepcopy(MINIMAL)).models[0].capacity.warm_pool is False


def test_plan_json_lists_fallbacks_and_start_times(prod):
    """`plan.py --json` prints DeploymentPlan.as_dict(): the capacity fields, valid against the public schema."""
    import jsonschema
    schema = json.loads((ROOT / "schemas" / "plan.schema.json").read_text())
    deployment = {**schema, "$ref": "#/$defs/deployment"}
    deployment.pop("oneOf")
    _, plans = prod
    for p in plans:
        d = json.loads(json.dumps(p.as_dict()))
        jsonschema.validate(d, deployment)
        assert d["fallbacks"] and d["fallbacks"][0]["weighted_capacity"] >= 1
        assert {"instance_type", "tensor_parallel_size", "per_gpu_required_gib", "per_gpu_usable_gib",
                "hourly_cost_per_replica_usd", "requests_per_s_per_replica",
                "replicas_for_load"} <= set(d["fallbacks"][0])
        assert d["startup"]["warm_pool_seconds"] < d["startup"]["cold_seconds"]



def test_autoscaling_headroom_covers_the_slowest_type(eks):
    from llm_platform.sizing.fallbacks import replicas_max_any_type
    _, plans = eks
    for p in plans:
        n = replicas_max_any_type(p)
        assert n >= p.replicas_max
        for f in p.fallbacks:    # n replicas of any listed type carry replicas_max chosen-type replicas
            assert n * f.relative_throughput >= p.replicas_max - 1e-9
    qwen = next(p for p in plans if p.name == "qwen-coder-32b")
    assert replicas_max_any_type(qwen) > qwen.replicas_max      # its g7e.48xlarge fallback counts 6 units

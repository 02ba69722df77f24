"""Capacity planning from a stated load: the `load` block, replicas and autoscaling from it, latency
targets that cannot be met (exit 2 with what is achievable where), and the `throughput` object."""
import copy
import json

import pytest

from llm_platform.settings import ConfigErrors, parse
from llm_platform.sizing.planner import PlanningError, plan_model
from tests.conftest import MINIMAL, plan_output, prod_config

LOAD = {"requests_per_second": 3, "prompt_tokens": 1000, "output_tokens": 200,
        "ttft_p99_seconds": 0.5, "tpot_p99_seconds": 0.03}
EMBED = {"model": "nomic-ai/nomic-embed-text-v1.5", "trust_remote_code": True, "precision": "fp16",
         "max_model_len": 2048}


def _raw(env="dev", **model):
    raw = prod_config() if env == "prod" else copy.deepcopy(MINIMAL)
    m = raw["llm-platform:models"][0]
    if env == "prod" and ("replicas" not in model and "autoscaling" not in model):
        m.pop("replicas")
    m.update(model)
    return raw


def plan(env="dev", **model):
    s = parse(_raw(env, **model))
    return plan_model(s.models[0], 0, s)


def errors_of(env="dev", **model):
    with pytest.raises((ConfigErrors, PlanningError)) as exc:
        plan(env, **model)
    return {e.path: e.message for e in exc.value.errors}


# ----------------------------------------------------------------------------- the load block

def test_a_generation_load_needs_output_tokens():
    errs = errors_of(load={k: v for k, v in LOAD.items() if k != "output_tokens"})
    assert "add output_tokens" in errs["llm-platform:models[0].load.output_tokens"]


def test_an_embedding_load_has_no_output_tokens_and_no_tpot():
    errs = errors_of(**EMBED, load={"requests_per_second": 5, "prompt_tokens": 200, "output_tokens": 1})
    assert "returns vectors" in errs["llm-platform:models[0].load.output_tokens"]
    errs = errors_of(**EMBED, load={"requests_per_second": 5, "prompt_tokens": 200, "tpot_p99_seconds": 0.1})
    assert "remove tpot_p99_seconds" in errs["llm-platform:models[0].load.tpot_p99_seconds"]


def test_requests_longer_than_max_model_len_are_refused_with_the_numbers():
    errs = errors_of(max_model_len=1024, load=LOAD)
    assert "1200 exceeds max_model_len (1024)" in errs["llm-platform:models[0].load.prompt_tokens"]


@pytest.mark.parametrize("key, value", [("requests_per_second", 0), ("prompt_tokens", 0), ("ttft_p99_seconds", -1),
                                        ("extra", 1)])
def test_load_values_are_validated(key, value):
    errs = errors_of(load={**LOAD, key: value})
    assert any(p.startswith("llm-platform:models[0].load") for p in errs)


def test_prod_accepts_a_load_instead_of_replicas_and_never_plans_fewer_than_two():
    p = plan("prod", load={**LOAD, "requests_per_second": 0.1})
    assert p.throughput.replicas_for_load == 1
    assert p.replicas_min == 2 and p.replicas_max >= 3


# ----------------------------------------------------------------------------- replicas follow the load

def test_replicas_follow_the_load_and_monthly_cost_follows_the_replicas():
    small, big = plan(load=LOAD), plan(load={**LOAD, "requests_per_second": 30})
    assert big.throughput.replicas_for_load > small.throughput.replicas_for_load
    assert big.replicas_min == big.throughput.replicas_for_load
    assert big.replicas_max >= 2 * big.replicas_min - 1
    assert big.monthly_cost_usd == pytest.approx(big.hourly_cost_usd * big.replicas_min * 730, abs=0.01)
    rps_capacity = big.replicas_min * big.throughput.requests_per_s_per_replica
    assert rps_capacity >= 30


def test_the_batch_is_the_largest_that_meets_the_targets():
    loose, tight = plan(load={**LOAD, "tpot_p99_seconds": 1.0}), plan(load={**LOAD, "tpot_p99_seconds": 0.02})
    assert loose.throughput.batch_for_load == loose.concurrency          # no target binds: the KV pool does
    assert tight.throughput.tpot_seconds <= 0.02 and loose.throughput.tpot_seconds <= 1.0
    assert tight.throughput.ttft_seconds <= 0.5


def test_stated_replicas_bound_the_search_and_a_load_they_cannot_carry_is_an_error_that_says_how_many():
    one = plan(replicas=1, load={**LOAD, "requests_per_second": 30})      # a bigger instance carries it alone
    assert one.replicas_min == 1 and one.throughput.requests_per_s_per_replica >= 30
    errs = errors_of(replicas=1, load={**LOAD, "requests_per_second": 1000})
    msg = errs["llm-platform:models[0].replicas"]
    assert "needs" in msg and "raise replicas to" in msg
    errs = errors_of(autoscaling={"min": 1, "max": 2}, load={**LOAD, "requests_per_second": 1000})
    assert "raise autoscaling.max to at least" in errs["llm-platform:models[0].autoscaling.max"]


def test_stated_replicas_that_suffice_are_kept():
    p = plan(replicas=5, load=LOAD)
    assert (p.replicas_min, p.replicas_max) == (5, 5)


def test_an_unreachable_tpot_is_exit_2_naming_what_is_achievable_on_which_instance():
    errs = errors_of(load={**LOAD, "tpot_p99_seconds": 0.0005})
    msg = errs["llm-platform:models[0].load.tpot_p99_seconds"]
    assert "cannot be met" in msg and "the fastest is" in msg and "ms" in msg and "xlarge" in msg
    assert "raise tpot_p99_seconds to at least" in msg


def test_an_unreachable_ttft_on_a_forced_instance_is_exit_2_too():
    errs = errors_of(instance_type="g6e.xlarge", load={**LOAD, "prompt_tokens": 7000, "ttft_p99_seconds": 0.01})
    msg = errs["llm-platform:models[0].load.ttft_p99_seconds"]
    assert "g6e.xlarge" in msg and "remove instance_type" in msg


def test_a_tight_tpot_picks_a_faster_instance_than_memory_alone_would():
    memory_only, fast = plan(), plan(load={**LOAD, "tpot_p99_seconds": 0.008})
    assert fast.throughput.tpot_seconds <= 0.008
    assert fast.instance_type != memory_only.instance_type
    assert "cheapest fleet" in fast.choice["reason"] and "runner-up" in fast.choice["reason"]
    assert fast.choice["runner_up"]["monthly_cost_usd"] >= fast.monthly_cost_usd


# ----------------------------------------------------------------------------- the throughput object

KEYS = {"decode_tokens_per_s_single", "decode_tokens_per_s_full", "prefill_tokens_per_s", "ttft_seconds",
        "replicas_for_load", "usd_per_million_output_tokens"}


def test_without_a_load_the_load_dependent_fields_are_null():
    t = plan().as_dict()["throughput"]
    assert KEYS <= t.keys()
    assert t["decode_tokens_per_s_full"] > t["decode_tokens_per_s_single"] > 0 and t["prefill_tokens_per_s"] > 0
    assert t["ttft_seconds"] is None and t["replicas_for_load"] is None and t["usd_per_million_output_tokens"] is None


def test_an_embedder_is_prefill_bound_and_has_no_decode_or_output_token_price():
    t = plan(**EMBED, load={"requests_per_second": 50, "prompt_tokens": 512, "ttft_p99_seconds": 0.2}
             ).as_dict()["throughput"]
    assert t["decode_tokens_per_s_single"] is None and t["usd_per_million_output_tokens"] is None
    assert t["prefill_tokens_per_s"] > 0 and t["replicas_for_load"] >= 1 and t["ttft_seconds"] <= 0.2


def test_usd_per_million_output_tokens_is_the_fleet_price_over_the_served_tokens():
    p = plan(load=LOAD)
    t = p.throughput
    expected = p.replicas_min * p.hourly_cost_usd / (3 * 200 * 3600) * 1e6
    assert t.usd_per_million_output_tokens == pytest.approx(expected)


def test_the_prod_stack_states_a_load_and_its_plan_shows_throughput_and_replicas_from_it():
    code, out, err = plan_output("--stack", "prod", "--json")
    assert code == 0, err
    body = json.loads(out)
    for d in body["deployments"]:
        t = d["throughput"]
        assert KEYS <= t.keys(), d["name"]
        assert t["replicas_for_load"] >= 1 and t["ttft_seconds"] is not None, d["name"]
        assert d["replicas"]["min"] == max(2, t["replicas_for_load"]), d["name"]
    text = plan_output("--stack", "prod")[1]
    assert "### Throughput" in text and "replicas from load" in text

"""The performance model (sizing/performance.py): its physics as properties, worked examples, its
calibration facts, and its predictions against published measurements held out of the calibration."""
import math
import re

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_platform.sizing import performance as perf
from llm_platform.sizing.memory import Layout, Workload, max_sequences, weight_bytes
from tests.conftest import ROOT

MEASUREMENTS = yaml.safe_load(open(ROOT / "tests" / "data" / "measured_throughput.yaml"))["measurements"]
GENERATORS = ["meta-llama/Llama-3.1-8B-Instruct", "Qwen/Qwen2.5-Coder-7B-Instruct", "Qwen/Qwen2.5-Coder-32B-Instruct",
              "mistralai/Mixtral-8x7B-Instruct-v0.1", "meta-llama/Llama-3.1-70B-Instruct", "bigcode/starcoder2-15b",
              "deepseek-ai/DeepSeek-Coder-V2-Instruct"]
INSTANCES = ["g4dn.xlarge", "g5.xlarge", "g6.xlarge", "g6e.xlarge", "g6e.12xlarge", "g7e.2xlarge", "p4d.24xlarge",
             "p5.4xlarge", "p5.48xlarge", "p5en.48xlarge", "p6-b200.48xlarge"]
LLAMA8 = "meta-llama/Llama-3.1-8B-Instruct"


def _arch(cat, model):
    return cat.models[model].architecture


def _hw(cat, instance):
    return perf.hardware_of(cat.instances[instance], cat)


# ----------------------------------------------------------------------------- catalog facts

def test_every_gpu_has_bandwidth_and_a_16_bit_matrix_rate(cat):
    for name, gpu in cat.gpus.items():
        assert gpu.memory_bandwidth_gbps, name
        assert gpu.tensor_16bit_tflops, name
        if gpu.compute_capability >= 8.9:
            assert gpu.fp8_dense_tflops and gpu.fp8_dense_tflops >= gpu.tensor_16bit_tflops, name


def test_every_multi_gpu_instance_has_a_gpu_to_gpu_path(cat):
    for inst in cat.instances.values():
        hw = perf.hardware_of(inst, cat)
        if inst.gpu_count > 1:
            assert hw.link in ("nvlink", "pcie") and hw.link_gbps > 0, inst.name
    assert _hw(cat, "p5.48xlarge").link_gbps == 450          # 900 GB/s NVSwitch, one direction
    assert _hw(cat, "g6e.12xlarge").link == "pcie"


def test_calibration_is_sourced_dated_and_plausible(cat):
    text = (ROOT / "llm_platform" / "catalog" / "performance.yaml").read_text()
    assert "2026-11-25" in text and text.count("http") + text.count("github.com") >= 3
    c = cat.performance
    assert 0.5 <= c.memory_fraction <= 0.95 and 0.3 <= c.compute_fraction <= 0.9
    gpus = (ROOT / "llm_platform" / "catalog" / "gpus.yaml").read_text()
    assert "zzc0721/torch-performance-test-data#126" in gpus      # the A10G figure is a cited measurement


# ----------------------------------------------------------------------------- worked examples

def test_llama_8b_bf16_batch_1_on_an_h100_streams_its_weights_once_per_token(cat):
    arch, hw = _arch(cat, LLAMA8), _hw(cat, "p5.4xlarge")
    step = perf.decode_step(arch, "bf16", 2, Layout(), hw, 1, 0)
    embed = arch.vocab_size * arch.hidden_size * 2                # looked up, never streamed
    streamed = weight_bytes(arch, "bf16") - embed
    assert streamed / 1e9 == pytest.approx(15.01, abs=0.01)
    assert step.memory_s == pytest.approx(streamed / (3350e9 * 0.76))
    assert step.seconds == pytest.approx(step.memory_s + 0.0005 + 20e-6)      # fixed + one sequence's share
    assert step.bound == "memory"


def test_kv_cache_reads_scale_with_batch_and_context_and_halve_in_fp8(cat):
    arch, hw = _arch(cat, LLAMA8), _hw(cat, "p5.4xlarge")
    base = perf.decode_step(arch, "bf16", 2, Layout(), hw, 64, 0).memory_s
    kv16 = perf.decode_step(arch, "bf16", 2, Layout(), hw, 64, 4096).memory_s - base
    kv8 = perf.decode_step(arch, "bf16", 1, Layout(), hw, 64, 4096).memory_s - base
    # 128 KiB per token, read by paged-attention kernels at 0.76 x 4096 / (4096 + 112) of the bandwidth
    assert kv16 * 3350e9 * 0.76 * 4096 / (4096 + 112) == pytest.approx(64 * 4096 * 32 * 8 * 128 * 2 * 2)
    assert kv8 == pytest.approx(kv16 / 2)


def test_fp8_and_awq_read_fewer_bytes_and_fp8_computes_at_the_fp8_rate_where_the_gpu_has_it(cat):
    arch, hw = _arch(cat, LLAMA8), _hw(cat, "p5.4xlarge")
    bf16 = perf.prefill_chunk(arch, "bf16", Layout(), hw, 8192).compute_s
    fp8 = perf.prefill_chunk(arch, "fp8", Layout(), hw, 8192).compute_s
    assert fp8 < 0.6 * bf16                                       # linear layers at 1979 vs 989 TFLOPS
    a100 = _hw(cat, "p4d.24xlarge")                               # Ampere: FP8 is weight-only, 16-bit math
    assert perf.prefill_chunk(arch, "fp8", Layout(), a100, 8192).compute_s == pytest.approx(
        perf.prefill_chunk(arch, "bf16", Layout(), a100, 8192).compute_s)
    for p in ("fp8", "awq"):
        assert perf.decode_step(arch, p, 2, Layout(), hw, 1, 2048).memory_s < \
            0.6 * perf.decode_step(arch, "bf16", 2, Layout(), hw, 1, 2048).memory_s


def test_moe_reads_only_routed_experts_at_small_batch_and_all_of_them_at_large_batch(cat):
    arch, hw = _arch(cat, "mistralai/Mixtral-8x7B-Instruct-v0.1"), _hw(cat, "p5.48xlarge")
    assert perf.experts_touched(arch, 1) == pytest.approx(2 / 8)
    assert perf.experts_touched(arch, 256) == pytest.approx(1.0)
    layout = Layout(tensor_parallel=2)
    one = perf.decode_step(arch, "bf16", 2, layout, hw, 1, 0).memory_s
    many = perf.decode_step(arch, "bf16", 2, layout, hw, 256, 0).memory_s
    # ~13 B active of ~47 B total parameters at batch 1; everything at batch 256
    assert 0.25 < one / many < 0.33


def test_tensor_parallel_splits_the_bytes_and_pays_two_all_reduces_a_layer(cat):
    arch, hw = _arch(cat, "meta-llama/Llama-3.1-70B-Instruct"), _hw(cat, "p5.48xlarge")
    tp2 = perf.decode_step(arch, "bf16", 2, Layout(tensor_parallel=2), hw, 1, 0)
    tp4 = perf.decode_step(arch, "bf16", 2, Layout(tensor_parallel=4), hw, 1, 0)
    assert tp4.memory_s == pytest.approx(tp2.memory_s / 2, rel=0.02)
    one = 20e-6 + 2 * (4 - 1) / 4 * 8192 * 2 / (450e9 * 0.8)
    assert tp4.comm_s == pytest.approx(2 * 80 * one)
    pcie = perf.decode_step(arch, "bf16", 2, Layout(tensor_parallel=4), _hw(cat, "g6e.24xlarge"), 1, 0)
    assert pcie.comm_s > tp4.comm_s


def test_embedders_prefill_but_never_decode(cat):
    arch, hw = _arch(cat, "nomic-ai/nomic-embed-text-v1.5"), _hw(cat, "g6.xlarge")
    r = perf.rates(arch, "fp16", 2, Layout(), hw, 2048, 64, 8192)
    assert r.decode_tokens_per_s_single is None and r.decode_tokens_per_s_full is None
    assert r.prefill_tokens_per_s > 10_000
    with pytest.raises(ValueError):
        perf.decode_step(arch, "fp16", 2, Layout(), hw, 1, 10)


# ----------------------------------------------------------------------------- properties

@st.composite
def shapes(draw):
    return dict(model=draw(st.sampled_from(GENERATORS)), instance=draw(st.sampled_from(INSTANCES)),
                batch=draw(st.integers(1, 256)), context=draw(st.integers(0, 32768)),
                kv=draw(st.sampled_from([1, 2])))


def _layout(cat, inst, arch):
    from llm_platform.sizing.planner import tensor_parallel_options
    return Layout(tensor_parallel=max(tensor_parallel_options(arch, cat.instances[inst].gpu_count)))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes(), st.floats(1.01, 4.0))
def test_more_bandwidth_is_never_slower(cat, s, factor):
    arch, hw = _arch(cat, s["model"]), _hw(cat, s["instance"])
    layout = _layout(cat, s["instance"], arch)
    faster = hw.with_bandwidth(hw.gpu.memory_bandwidth_gbps * factor)
    assert perf.decode_step(arch, "bf16", s["kv"], layout, faster, s["batch"], s["context"]).seconds <= \
        perf.decode_step(arch, "bf16", s["kv"], layout, hw, s["batch"], s["context"]).seconds
    assert perf.prefill_chunk(arch, "bf16", layout, faster, 2048).seconds <= \
        perf.prefill_chunk(arch, "bf16", layout, hw, 2048).seconds


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(GENERATORS[:4] + GENERATORS[5:6]), st.sampled_from(["g6e.xlarge", "g7e.2xlarge", "p5.4xlarge",
                                                                        "p5.48xlarge", "g6e.12xlarge"]),
       st.sampled_from([2048, 8192]), st.sampled_from(["bf16", "fp8", "awq"]))
def test_a_larger_batch_never_lowers_aggregate_throughput_up_to_the_memory_limit(cat, model, instance, context,
                                                                                  precision):
    arch = _arch(cat, model)
    inst = cat.instances[instance]
    layout = _layout(cat, instance, arch)
    w = Workload("vllm", precision, "auto", context, 1, 8192, 0.9)
    limit = max_sequences(arch, w, layout, cat.gpu_of(inst).memory_gib, cat)
    hw = perf.hardware_of(inst, cat)
    previous = 0.0
    for b in sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, limit} - {0}):
        if b > limit:
            break
        rate = b / perf.decode_step(arch, precision, 2, layout, hw, b, context).seconds
        assert rate >= previous * (1 - 1e-9), (b, rate, previous)
        previous = rate


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes(), st.sampled_from(["fp8", "awq", "gptq"]))
def test_fp8_and_4_bit_weights_are_never_slower_than_bf16_at_decode(cat, s, quantized):
    arch, hw = _arch(cat, s["model"]), _hw(cat, s["instance"])
    layout = _layout(cat, s["instance"], arch)
    args = (s["kv"], layout, hw, s["batch"], s["context"])
    assert perf.decode_step(arch, quantized, *args).seconds <= perf.decode_step(arch, "bf16", *args).seconds


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(GENERATORS), st.integers(1, 64), st.integers(1, 64))
def test_experts_touched_grows_with_the_batch_and_stays_a_fraction(cat, model, a, b):
    arch = _arch(cat, model)
    lo, hi = sorted((a, b))
    assert 0 < perf.experts_touched(arch, lo) <= perf.experts_touched(arch, hi) <= 1


# ----------------------------------------------------------------------------- against measurements

def predict(cat, m) -> float:
    arch = _arch(cat, m["model"])
    hw = _hw(cat, m["instance"])
    layout = Layout(tensor_parallel=m["tensor_parallel"])
    p = m["precision"]
    if m["kind"] == "decode_tokens_per_s":
        return m["batch"] / perf.decode_step(arch, p, 2, layout, hw, m["batch"], m["context"]).seconds
    if m["kind"] == "decode_tpot_ms":
        return perf.decode_step(arch, p, 2, layout, hw, m["batch"], m["context"]).seconds * 1e3
    if m["kind"] == "prefill_seconds":
        return perf.prefill_seconds(arch, p, layout, hw, m["prompt"], 8192)
    if m["kind"] == "e2e_latency_ms":
        b, n, out = m["batch"], m["prompt"], m["output"]
        t = perf.prefill_chunk(arch, p, layout, hw, b * n).seconds
        t += sum(perf.decode_step(arch, p, 2, layout, hw, b, n + i).seconds for i in range(out - 1))
        return t * 1e3
    raise ValueError(m["kind"])


@pytest.mark.parametrize("m", MEASUREMENTS, ids=lambda m: f"{m['model'].split('/')[1]}-{m['instance']}-{m['kind']}")
def test_predictions_are_within_35_percent_of_published_measurements(cat, m):
    predicted = predict(cat, m)
    assert predicted == pytest.approx(m["measured"], rel=0.35), f"predicted {predicted:.4g}, measured {m['measured']}"


def test_the_held_out_set_covers_decode_prefill_tp_and_several_gpus():
    held = [m for m in MEASUREMENTS if not m.get("calibration")]
    assert {m["kind"] for m in held} >= {"decode_tokens_per_s", "decode_tpot_ms", "prefill_seconds"}
    assert len({m["instance"] for m in held}) >= 3 and any(m["tensor_parallel"] > 1 for m in held)
    assert all(m["source"] for m in MEASUREMENTS)


def test_llama_8b_on_an_h100_at_the_issues_reference_points(cat):
    """Predictions for the shapes the capacity-planning issue names (README, 'Capacity planning')."""
    arch, hw = _arch(cat, LLAMA8), _hw(cat, "p5.4xlarge")
    b1 = 1 / perf.decode_step(arch, "bf16", 2, Layout(), hw, 1, 2048).seconds
    b128 = 128 / perf.decode_step(arch, "bf16", 2, Layout(), hw, 128, 2048).seconds
    chunk = 8192 / perf.prefill_chunk(arch, "bf16", Layout(), hw, 8192).seconds
    # 128 sequences at 2k context: the weights once, 34 GB of KV at the paged-attention rate (0.72 of the
    # bandwidth at 2k), and 20 us of scheduling/sampling per sequence (issue #12: the batch-free model promised
    # ~6,500 tok/s here, 1.6x what a public 256-sequence vLLM run shows; tests/data/published/ holds that run)
    assert 140 < b1 < 170 and 4500 < b128 < 6500 and 30_000 < chunk < 45_000
    assert math.isclose(b128 / b1, 36.0, rel_tol=0.1)             # batching: 128 x the work at ~3.5x the step time


README_ROW = re.compile(r"^\| [^|]+\((?P<inst>[a-z0-9.-]+)\) \| \d+ GB/s \| (?P<b1>\d+) / "
                        r"(?P<b32>[\d,]+|— \(32 x 2k do not fit: (?P<seqs>\d+) do, (?P<bseq>\d+) tok/s\)) \| "
                        r"(?P<f1>\d+) / (?P<f32>[\d,]+) \|", re.M)


def test_the_readmes_throughput_rows_are_shapes_the_planner_accepts_and_reproduces(cat):
    """README 'the guide's 7B FP16' table: every number is what sizing/ computes, and a 32-sequence figure is
    only given where 32 sequences of 2k tokens fit the GPU (else the largest batch that does)."""
    from llm_platform.sizing.memory import Workload, estimate, max_sequences
    rows = list(README_ROW.finditer((ROOT / "README.md").read_text()))
    assert len(rows) == 6
    arch = _arch(cat, LLAMA8)
    num = lambda s: int(s.replace(",", ""))  # noqa: E731
    for r in rows:
        inst = cat.instances[r["inst"]]
        hw, gib = perf.hardware_of(inst, cat), cat.gpu_of(inst).memory_gib
        for p, one, many in (("bf16", r["b1"], r["b32"]), ("fp8", r["f1"], r["f32"])):
            assert round(1 / perf.decode_step(arch, p, 2, Layout(), hw, 1, 2048).seconds) == num(one), (r["inst"], p)
            w = Workload("vllm", p, "auto", 2048, 32, 8192, 0.9)
            if many.startswith("—"):
                seqs = int(r["seqs"])
                assert not estimate(arch, w, Layout(), gib, cat).fits
                assert max_sequences(arch, w, Layout(), gib, cat) == seqs
                got = seqs / perf.decode_step(arch, p, 2, Layout(), hw, seqs, 2048).seconds
                assert round(got) == int(r["bseq"]), r["inst"]
            else:
                assert estimate(arch, w, Layout(), gib, cat).fits, (r["inst"], p)
                assert round(32 / perf.decode_step(arch, p, 2, Layout(), hw, 32, 2048).seconds) == num(many), r["inst"]

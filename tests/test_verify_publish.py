"""Where the gate's results go: a measurement record in the published-measurement fixtures' shape, S3 and
CloudWatch (moto: no network), and the client key read from Secrets Manager."""
from __future__ import annotations

import datetime as dt

import boto3
import pytest
import yaml
from moto import mock_aws

from llm_platform.verify import CannotRun
from llm_platform.verify.judge import checks
from llm_platform.verify.publish import put_metrics, put_results, read_secret, write_record
from llm_platform.verify.report import build
from llm_platform.verify.spec import from_stack_file, profile_of
from tests.conftest import ROOT

MEASURED = {"requests": {"ramp": 40, "steady": 300, "ok": 300, "failed": 0}, "errors": {},
            "ttft_p50_seconds": 0.41, "ttft_p99_seconds": 0.93, "tpot_p50_seconds": 0.041, "tpot_p99_seconds": 0.047,
            "itl_p99_seconds": 0.06, "e2e_p50_seconds": 21.0, "output_tokens_per_second": 498.0,
            "requests_per_second": 1.0, "offered_requests_per_second": 1.0, "error_rate": 0.0,
            "prompt_tokens_mean": 3004.2, "output_tokens_mean": 500.0, "usage_reported": True, "samples": 300,
            "in_flight_mean": 21.9}


@pytest.fixture(scope="module")
def spec():
    return from_stack_file(ROOT / "Pulumi.prod.yaml", "llama-70b")


@pytest.fixture(scope="module")
def report(spec):
    profile = profile_of(spec)
    cs = checks(spec, profile, MEASURED, 0.35, 0.01)
    return build(spec, "https://llama-70b.llm.internal.example.com/v1", profile, MEASURED, cs, [], 0.35, 380.0,
                 now=dt.datetime(2026, 11, 30, 14, 0, tzinfo=dt.UTC))


def test_the_record_carries_the_measurement_and_the_plan_it_was_judged_against(report, spec, tmp_path):
    rec, plan = report["measurement"], spec.deployment
    assert rec["model"] == "meta-llama/Llama-3.1-70B-Instruct" and rec["date"] == "2026-11-30"
    assert rec["id"] == "gate-prod-llama-70b-20261130T140000Z"
    assert rec["source"].startswith("llm-platform verify: prod/llama-70b at https://llama-70b.")
    assert (rec["instance"], rec["tensor_parallel"], rec["precision"]) == (
        plan["instance_type"], plan["tensor_parallel_size"], "fp8")
    assert rec["gpu"] == plan["gpu"]["name"] and rec["max_num_seqs"] == plan["concurrency"]
    assert rec["max_model_len"] == 32768
    # per replica, as a published single-server benchmark states them: 21.9 in flight, 498 tokens/s in all
    replicas = plan["replicas"]["min"]
    assert rec["replicas"] == replicas and rec["concurrency"] == max(1, round(21.9 / replicas))
    assert rec["measured"]["output_tok_s"] == round(498.0 / replicas, 2)
    assert (rec["prompt"], rec["output"]) == (3004, 500)
    assert rec["measured"]["tpot_ms"] == 41.0 and rec["measured"]["tpot_p99_ms"] == 47.0
    assert rec["measured"]["ttft_p99_ms"] == 930.0
    assert rec["predicted"]["tpot_ms"] and rec["predicted"]["batch"]        # the plan's numbers, side by side
    assert rec["targets"] == {"ttft_p99_seconds": 3, "tpot_p99_seconds": 0.05} and rec["verdict"] == "pass"
    path = tmp_path / "deployed.yaml"
    write_record(path, rec)
    write_record(path, rec)                     # appends: one file collects a history of runs
    doc = yaml.safe_load(path.read_text())
    assert len(doc["cases"]) == 2 and doc["cases"][0]["url"] == rec["url"]


def test_the_record_is_read_like_a_published_benchmark(report, cat):
    """tests/test_published.py predicts a published vLLM benchmark case from its fields; a gate record is such
    a case, so the same check (and any calibration built on it) takes deployed runs as they are."""
    from tests.test_published import THROUGHPUT, predict_throughput
    rec = report["measurement"]
    published_keys = set().union(*(c.keys() for c in THROUGHPUT)) - {"calibration", "max_model_len"}
    assert {"id", "url", "setup", "model", "instance", "precision", "tensor_parallel", "concurrency", "prompt",
            "output", "measured"} <= set(rec) and published_keys <= set(rec) | {"kv_cache_dtype"}
    predicted = predict_throughput(cat, rec)
    assert predicted["tpot_ms"] > 0 and predicted["output_tok_s"] > 0


@mock_aws
def test_results_go_to_s3_and_cloudwatch(report, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="llm-prod-models-x")
    keys = put_results("s3://llm-prod-models-x/gate/prod", report)
    assert keys == ["gate/prod/llama-70b/2026-11-30T140000Z.json",
                    "gate/prod/llama-70b/2026-11-30T140000Z.measurement.yaml"]
    body = yaml.safe_load(s3.get_object(Bucket="llm-prod-models-x", Key=keys[1])["Body"].read())
    assert body["cases"][0]["deployment"] == "llama-70b"
    put_metrics("LlmPlatform/prod/Gate", report)
    cw = boto3.client("cloudwatch")
    names = {m["MetricName"] for m in cw.list_metrics(Namespace="LlmPlatform/prod/Gate")["Metrics"]}
    assert {"TtftP99", "TpotP99", "OutputTokensPerSecond", "ErrorRate", "GatePassed"} <= names
    with pytest.raises(CannotRun, match="cannot write results"):
        put_results("s3://no-such-bucket/gate", report)


@mock_aws
def test_the_client_key_comes_from_secrets_manager(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    arn = boto3.client("secretsmanager").create_secret(Name="llm-platform/prod/clients/deploy-gate",
                                                       SecretString="k" * 48)["ARN"]
    assert read_secret(arn) == "k" * 48
    with pytest.raises(CannotRun, match="cannot read the API key"):
        read_secret(arn.replace("deploy-gate", "other"))

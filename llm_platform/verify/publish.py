"""Where results go beyond stdout: a measurement file, S3 and CloudWatch (boto3, imported only when asked).

In the VPC the runners' role may: read one secret (the gate's client key), put objects under the stack's
gate prefix of the model-store bucket, put metric data into the stack's gate namespace. Nothing else.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from . import CannotRun

# CloudWatch metric names and the report fields they carry
METRICS = {"TtftP99": ("ttft_p99_seconds", "Seconds"), "TpotP99": ("tpot_p99_seconds", "Seconds"),
           "TtftP50": ("ttft_p50_seconds", "Seconds"), "TpotP50": ("tpot_p50_seconds", "Seconds"),
           "OutputTokensPerSecond": ("output_tokens_per_second", "Count/Second"),
           "RequestsPerSecond": ("requests_per_second", "Count/Second"), "ErrorRate": ("error_rate", "None")}


def _boto3():
    try:
        import boto3
    except ImportError:
        raise CannotRun("boto3 is not installed: pip install 'llm-platform[aws]' to read secrets or publish "
                        "results") from None
    return boto3


def read_secret(arn: str) -> str:
    boto3 = _boto3()
    from botocore.exceptions import BotoCoreError, ClientError
    try:
        value = boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
    except (BotoCoreError, ClientError) as exc:
        raise CannotRun(f"cannot read the API key from {arn}: {exc}") from None
    return value.strip()


def write_record(path: Path, record: dict) -> None:
    """Append the record to a `cases:` list (the shape of tests/data/published/vllm_throughput.yaml)."""
    doc: dict[str, Any] = {"cases": []}
    if path.is_file():
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if isinstance(loaded, dict) and isinstance(loaded.get("cases"), list):
            doc = loaded
    doc["cases"].append(record)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=120), encoding="utf-8")


def results_keys(s3_url: str, report: dict) -> tuple[str, str, str]:
    if not s3_url.startswith("s3://") or len(s3_url) <= 5:
        raise CannotRun(f"--results {s3_url!r} is not an s3://bucket/prefix URL")
    bucket, _, prefix = s3_url[5:].partition("/")
    stamp = report["time"].replace(":", "").replace("+0000", "Z")
    base = f"{prefix.strip('/')}/{report['deployment']}/{stamp}".lstrip("/")
    return bucket, f"{base}.json", f"{base}.measurement.yaml"


def put_results(s3_url: str, report: dict) -> list[str]:
    boto3 = _boto3()
    from botocore.exceptions import BotoCoreError, ClientError
    bucket, report_key, record_key = results_keys(s3_url, report)
    s3 = boto3.client("s3")
    try:
        s3.put_object(Bucket=bucket, Key=report_key, Body=json.dumps(report, indent=2).encode(),
                      ContentType="application/json")
        s3.put_object(Bucket=bucket, Key=record_key, ContentType="application/yaml",
                      Body=yaml.safe_dump({"cases": [report["measurement"]]}, sort_keys=False).encode())
    except (BotoCoreError, ClientError) as exc:
        raise CannotRun(f"cannot write results to s3://{bucket}: {exc}") from None
    return [report_key, record_key]


def metric_data(report: dict) -> list[dict]:
    dims = [{"Name": "Stack", "Value": report["stack"] or "unknown"},
            {"Name": "Deployment", "Value": report["deployment"]}]
    data = [{"MetricName": name, "Dimensions": dims, "Value": float(report["measured"][field]), "Unit": unit}
            for name, (field, unit) in METRICS.items() if report["measured"].get(field) is not None]
    data.append({"MetricName": "GatePassed", "Dimensions": dims, "Value": 1.0 if report["verdict"] == "pass" else 0.0,
                 "Unit": "None"})
    return data


def put_metrics(namespace: str, report: dict) -> None:
    boto3 = _boto3()
    from botocore.exceptions import BotoCoreError, ClientError
    try:
        boto3.client("cloudwatch").put_metric_data(Namespace=namespace, MetricData=metric_data(report))
    except (BotoCoreError, ClientError) as exc:
        raise CannotRun(f"cannot put metrics into {namespace}: {exc}") from None

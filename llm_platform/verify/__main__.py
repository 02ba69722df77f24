"""llm-platform-verify: the deploy gate. Drive a deployment with its planned load; exit 0 if it meets the plan.

    python -m llm_platform.verify --stack prod --model llama-70b \\
        --endpoint https://llama-70b.llm.internal.example.com/v1 --ca-file ca.pem --api-key-env LLM_API_KEY

Exit 0: the deployment meets its plan; 1: it misses (each missed metric named, measured vs planned);
2: the gate could not run (endpoint unreachable, auth refused, no plan for the model, bad arguments).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import EXIT_CANNOT_RUN, CannotRun
from .judge import MIN_SAMPLES_FOR_P99, checks, metrics
from .report import build, error_report, render_text
from .run import endpoint_for, run
from .schedule import MAX_REQUESTS
from .spec import (
    DEFAULT_MAX_ERROR_RATE,
    DEFAULT_PATH_ALLOWANCE_S,
    DEFAULT_TOLERANCE,
    GateSpec,
    default_duration,
    from_json,
    from_stack_file,
    profile_of,
)

DEFAULT_KEY_ENV = "LLM_PLATFORM_API_KEY"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llm-platform-verify", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 2)[2])
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", metavar="NAME", help="plan Pulumi.<NAME>.yaml in the current directory")
    where.add_argument("--config", metavar="FILE", help="plan any stack file of the same form")
    where.add_argument("--plan", metavar="FILE",
                       help="a gate spec JSON file, or env:VAR (what the in-VPC Job and ECS task receive)")
    p.add_argument("--model", required=True, metavar="NAME", help="the deployment (model entry) name, e.g. llama-70b")
    p.add_argument("--endpoint", required=True, metavar="URL",
                   help="the deployment's base URL, http(s)://<host>[:port]/v1 (stack output `endpoints`)")
    p.add_argument("--ca-file", metavar="PEM",
                   help="CA bundle (PEM file, or env:VAR) to trust instead of the system's: the internal "
                   "CA (stack output `ca_cert_pem`)")
    p.add_argument("--api-key-env", metavar="VAR", default=DEFAULT_KEY_ENV,
                   help=f"environment variable holding a client API key (default {DEFAULT_KEY_ENV})")
    p.add_argument("--api-key-secret", metavar="ARN", help="read the key from this Secrets Manager secret instead "
                   "(boto3; the in-VPC runners' role may read only this one)")
    p.add_argument("--api", choices=("chat", "completions"), help="OpenAI route for generation models (default chat)")
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="ramp + steady seconds (default: enough for 300 steady requests at the stated rate, "
                        "the steady phase within 60-600 s; the first 20 %% ramps up and is not judged)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                   help=f"how far past a prediction a metric may be where no target is stated "
                        f"(default {DEFAULT_TOLERANCE})")
    p.add_argument("--path-allowance", type=float, default=DEFAULT_PATH_ALLOWANCE_S, metavar="SECONDS",
                   help="added to a TTFT prediction for handshakes, load balancer and proxy "
                        f"(default {DEFAULT_PATH_ALLOWANCE_S}); stated targets are end to end and get none")
    p.add_argument("--max-error-rate", type=float, default=DEFAULT_MAX_ERROR_RATE,
                   help=f"share of failed steady requests allowed (default {DEFAULT_MAX_ERROR_RATE})")
    p.add_argument("--max-requests", type=int, default=MAX_REQUESTS, help="hard bound on requests sent")
    p.add_argument("--seed", type=int, default=0, help="arrival times and prompts are reproducible per seed")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--record", metavar="FILE", help="also write the measurement record (YAML) to FILE")
    p.add_argument("--results", metavar="S3URL", help="also write report and record under s3://bucket/prefix/")
    p.add_argument("--cloudwatch-namespace", metavar="NS", help="also put the measured metrics into this namespace")
    return p


def _spec(args) -> GateSpec:
    if args.plan:
        return from_json(Path(args.plan), args.model)
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise CannotRun(f"--config {args.config}: no such file")
        return from_stack_file(path, args.model)
    path = Path.cwd() / f"Pulumi.{args.stack}.yaml"
    if not path.is_file():
        known = sorted(p.stem.removeprefix("Pulumi.") for p in Path.cwd().glob("Pulumi.*.yaml"))
        raise CannotRun(f"no stack named {args.stack!r} here ({Path.cwd()}): "
                        + (f"stacks are {', '.join(known)}" if known else "run from the project directory"))
    return from_stack_file(path, args.model, args.stack)


def _api_key(args) -> str:
    if args.api_key_secret:
        from .publish import read_secret
        return read_secret(args.api_key_secret)
    key = os.environ.get(args.api_key_env, "").strip()
    if not key:
        raise CannotRun(f"no API key: set {args.api_key_env} to a client key of the stack (Secrets Manager "
                        "llm-platform/<stack>/clients/<client>), or pass --api-key-secret ARN")
    return key


def gate(argv: list[str] | None = None) -> tuple[dict, argparse.Namespace]:
    """Run the gate; the report (its exit_code decides) and the parsed arguments. Prints nothing."""
    args = parser().parse_args(argv)
    try:
        if args.tolerance < 0 or args.path_allowance < 0 or not 0 <= args.max_error_rate < 1 or \
                (args.duration is not None and args.duration <= 0):
            raise CannotRun("--tolerance and --path-allowance must be >= 0, --max-error-rate in [0, 1), "
                            "--duration > 0")
        spec = _spec(args)
        ep = endpoint_for(spec, args.endpoint, _api_key(args), args.api, args.ca_file)
        profile = profile_of(spec, args.duration)
        result = run(spec, ep, profile, args.seed, args.max_requests)
    except CannotRun as exc:
        return error_report(str(exc), args.model, args.endpoint), args
    m = metrics(result, profile)
    notes = list(result.notes)
    if m["samples"] < MIN_SAMPLES_FOR_P99:
        need = default_duration(profile.requests_per_second) if profile.mode == "poisson" else None
        notes.append(f"p99 from {m['samples']} requests is close to their maximum: for a stable p99 run "
                     + (f"--duration {need:g} or more" if need else "longer"))
    if not m["usage_reported"] and m["samples"]:
        notes.append("the server sent no usage: output tokens were counted as content chunks")
    cs = checks(spec, profile, m, args.tolerance, args.max_error_rate, args.path_allowance)
    report = build(spec, ep.base_url, profile, m, cs, notes, args.tolerance, result.wall_s)
    try:
        _publish(report, args)
    except CannotRun as exc:
        report["notes"].append(f"results not published: {exc}")
        report["publish_error"] = str(exc)
    return report, args


def main(argv: list[str] | None = None) -> int:
    report, args = gate(argv)
    return _emit(report, args)


def _publish(report: dict, args) -> None:
    if args.record:
        from .publish import write_record
        write_record(Path(args.record), report["measurement"])
    if args.results or args.cloudwatch_namespace:
        from .publish import put_metrics, put_results
        if args.results:
            put_results(args.results, report)
        if args.cloudwatch_namespace:
            put_metrics(args.cloudwatch_namespace, report)


def _emit(report: dict, args) -> int:
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render_text(report), file=sys.stdout if report["verdict"] != "error" else sys.stderr)
    return report.get("exit_code", EXIT_CANNOT_RUN)


if __name__ == "__main__":
    sys.exit(main())

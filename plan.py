#!/usr/bin/env python3
"""Offline plan: the Pulumi program under recording mocks, with no AWS account and no Pulumi CLI.

    python plan.py [--stack NAME | --config FILE] [--json] [--sizing-only]
    python plan.py --catalog [--json]

Prints a verdict line, the sizing of every model and why it was chosen, cheaper alternatives, the
monthly cost, the policy pack's verdicts and the resource tree. --sizing-only stops after sizing,
costs and advice, without loading Pulumi (a fraction of the time: for iterating on a stack file).
Exit 0: planned, no mandatory violation; 1: planned, some mandatory violation; 2: the config is
invalid or no instance can serve a model (nothing planned).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from llm_platform import catalog
from llm_platform import report as plan_report
from llm_platform.settings import ConfigError, ConfigErrors, read_and_parse
from llm_platform.sizing.planner import PlanningError, hourly_price, plan_stack

ROOT = Path(__file__).resolve().parent

EXIT_OK, EXIT_VIOLATIONS, EXIT_INVALID = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.catalog:
        return _print_catalog(args.json)
    path = Path(args.config) if args.config else ROOT / f"Pulumi.{args.stack}.yaml"
    stack_name = args.stack if not args.config else path.stem.removeprefix("Pulumi.")
    if not args.config and not path.exists():
        known = sorted(p.stem.removeprefix("Pulumi.") for p in ROOT.glob("Pulumi.*.yaml"))
        return _fail([ConfigError(path.name, f"no stack named {args.stack!r}: shipped stacks are {', '.join(known)}")],
                     args.json)
    try:
        raw, config = read_and_parse(path)
        plans = plan_stack(config)
    except (ConfigErrors, PlanningError) as exc:
        return _fail(exc.errors, args.json)

    if args.sizing_only:
        return _print(plan_report.build(stack_name, config, plans, catalog.load()), args.json)

    import pulumi

    from llm_platform.offline.mocks import run_program  # imported late: the Pulumi SDK is only needed from here
    try:
        recording = run_program(raw, stack=stack_name, program=ROOT)
    except pulumi.RunError as exc:          # the program refused the stack before creating anything
        path, _, message = str(exc).partition(": ")
        return _fail([ConfigError(path if path.startswith("llm-platform:") else "llm-platform", message or str(exc))],
                     args.json)
    violations = _violations(recording, config)
    report = plan_report.build(stack_name, config, plans, catalog.load(),
                               resources=[r.as_dict() for r in recording.resources], violations=violations)
    _print(report, args.json)
    return EXIT_VIOLATIONS if any(v["enforcement"] == "mandatory" for v in violations) else EXIT_OK


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--stack", default="dev", help="plan Pulumi.<NAME>.yaml (default: dev)")
    where.add_argument("--config", metavar="FILE", help="plan any stack file of the same form")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--catalog", action="store_true", help="list the GPU instance catalog the planner uses")
    p.add_argument("--sizing-only", action="store_true",
                   help="sizing, costs and advice only: no Pulumi, no resources, no policies (fast)")
    return p


def _violations(recording, config) -> list[dict]:
    try:
        from llm_platform.policies import offline  # the policy pack, when present, judges the recorded resources
    except ImportError:
        return []
    return offline.evaluate_recording(recording, environment=config.environment)


def _print(report: dict, as_json: bool) -> int:
    print(json.dumps(report, indent=2) if as_json else plan_report.render_text(report), end="" if not as_json else "\n")
    return EXIT_OK


def _fail(errors: list[ConfigError], as_json: bool) -> int:
    if as_json:
        print(json.dumps({"errors": [e.as_dict() for e in errors]}, indent=2))
    else:
        print(f"Nothing planned: {len(errors)} problem{'s' if len(errors) != 1 else ''}.", file=sys.stderr)
        for e in errors:
            print(f"  {e.where}: {e.message}", file=sys.stderr)
    return EXIT_INVALID


def _print_catalog(as_json: bool) -> int:
    cat = catalog.load()
    rows = []
    for inst in sorted(cat.instances.values(), key=lambda i: (i.hourly_usd, i.name)):
        gpu = cat.gpu_of(inst)
        rows.append({"instance_type": inst.name,
                     "gpu": {"name": gpu.name, "count": inst.gpu_count, "memory_gib": round(gpu.memory_gib, 2)},
                     "vcpus": inst.vcpus, "memory_gib": round(inst.memory_mib / 1024, 1),
                     "hourly_cost_usd": hourly_price(inst, None), "purchase": inst.purchase,
                     "interconnect": inst.interconnect or None})
    if as_json:
        print(json.dumps({"instances": rows, "prices_as_of": cat.prices_as_of,
                          "prices_region": cat.prices_region}, indent=2))
        return EXIT_OK
    print(f"GPU instance catalog: {len(rows)} types, {cat.prices_region} on-demand prices as of {cat.prices_as_of}\n")
    print("| instance | GPUs | GiB/GPU (CUDA) | vCPUs | RAM GiB | $/h | note |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        g = r["gpu"]
        note = ", ".join(x for x in (r["interconnect"], r["purchase"] if r["purchase"] != "on-demand" else None) if x)
        print(f"| {r['instance_type']} | {g['count']} x {g['name']} | {g['memory_gib']:.1f} | {r['vcpus']} | "
              f"{r['memory_gib']:.0f} | {r['hourly_cost_usd']:.3f} | {note} |")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

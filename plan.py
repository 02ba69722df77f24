#!/usr/bin/env python3
"""Offline plan: the Pulumi program under recording mocks, with no AWS account and no Pulumi CLI.

    python plan.py [--stack NAME | --config FILE] [--json]
    python plan.py --catalog [--json]

Prints the sizing of every model, the resource tree with its inputs, the monthly cost and the
policy pack's verdicts. Exit 0: planned, no mandatory violation; 1: planned, some mandatory
violation; 2: the config is invalid or no instance can serve a model (nothing planned).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from llm_platform import catalog
from llm_platform.settings import ConfigError, ConfigErrors, absolute_paths, parse, read_stack_file
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
        raw = absolute_paths(read_stack_file(path), path.parent)   # architecture_file is relative to the stack file
        config = parse(raw)
        plans = plan_stack(config)
    except (ConfigErrors, PlanningError) as exc:
        return _fail(exc.errors, args.json)

    from llm_platform.offline.mocks import run_program   # imported late: the Pulumi SDK is only needed from here
    import pulumi
    try:
        recording = run_program(raw, stack=stack_name, program=ROOT)
    except pulumi.RunError as exc:          # the program refused the stack before creating anything
        path, _, message = str(exc).partition(": ")
        return _fail([ConfigError(path if path.startswith("llm-platform:") else "llm-platform", message or str(exc))],
                     args.json)
    violations = _violations(recording, config)
    report = {
        "stack": stack_name,
        "environment": config.environment,
        "platform": config.platform,
        "region": config.region,
        "monthly_cost_usd": round(sum(p.monthly_cost_usd for p in plans), 2),
        "monthly_cost_max_usd": round(sum(p.monthly_cost_max_usd for p in plans), 2),
        "prices_as_of": catalog.load().prices_as_of,
        "deployments": [p.as_dict() for p in plans],
        "resources": [r.as_dict() for r in recording.resources],
        "violations": violations,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render_text(report))
    return EXIT_VIOLATIONS if any(v["enforcement"] == "mandatory" for v in violations) else EXIT_OK


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--stack", default="dev", help="plan Pulumi.<NAME>.yaml (default: dev)")
    where.add_argument("--config", metavar="FILE", help="plan any stack file of the same form")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--catalog", action="store_true", help="list the GPU instance catalog the planner uses")
    return p


def _violations(recording, config) -> list[dict]:
    try:
        from llm_platform.policies import offline   # the policy pack, when present, judges the recorded resources
    except ImportError:
        return []
    return offline.evaluate_recording(recording, environment=config.environment)


def _fail(errors: list[ConfigError], as_json: bool) -> int:
    if as_json:
        print(json.dumps({"errors": [e.as_dict() for e in errors]}, indent=2))
    else:
        print(f"Nothing planned: {len(errors)} problem{'s' if len(errors) != 1 else ''}.", file=sys.stderr)
        for e in errors:
            print(f"  {e.path}: {e.message}", file=sys.stderr)
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


# ----------------------------------------------------------------------------- text report

def render_text(report: dict) -> str:
    out = [f"## llm-platform plan: stack `{report['stack']}`",
           f"environment **{report['environment']}**, platform **{report['platform']}**, region "
           f"**{report['region']}**; prices as of {report['prices_as_of']}", ""]
    out += ["### Deployments", "",
            "| model | runtime | instance x count | GPUs | TP x PP | context x seqs | per-GPU GiB (weights + KV + overhead = need / usable) | $/month |",
            "|---|---|---|---|---|---|---|---|"]
    for d in report["deployments"]:
        m, g = d["memory"], d["gpu"]
        fits = d["max_concurrency_at_full_context"]
        seqs = f"{d['concurrency']} (fits {fits})" if fits is not None else f"{d['concurrency']}"
        count = f"{d['instances']}" if d["replicas"]["min"] == d["replicas"]["max"] else \
            f"{d['instances']}-{d['replicas']['max'] * d['nodes_per_replica']}"
        out.append(
            f"| **{d['name']}** {d['model']} | {d['runtime']} {d['precision']} | {d['instance_type']} x {count} | "
            f"{g['count']} x {g['name']} {g['memory_gib']:.1f} GiB | {d['tensor_parallel_size']} x "
            f"{d['pipeline_parallel_size']} | {d['max_model_len']} x {seqs} | {m['per_gpu_weights_gib']:.1f} + "
            f"{m['per_gpu_kv_cache_gib']:.1f} + {m['overhead_gib']:.1f} = {m['per_gpu_required_gib']:.1f} / "
            f"{m['per_gpu_usable_gib']:.1f} | {d['monthly_cost_usd']:,.0f} |")
    out += _throughput_table(report["deployments"])
    notes = [(d["name"], n) for d in report["deployments"] for n in d["notes"]]
    if notes:
        out += [""] + [f"- {name}: {n}" for name, n in notes]
    total, top = report["monthly_cost_usd"], report["monthly_cost_max_usd"]
    out += ["", f"**Monthly cost: ${total:,.2f}**" + (f" (up to ${top:,.2f} at autoscaling max)" if top != total else "")
            + " at 730 h/month, on-demand list prices.", ""]
    out += [f"### Resources ({len(report['resources'])})", "", "```"] + _tree(report["resources"]) + ["```", ""]
    out += ["### Policy violations", ""]
    if not report["violations"]:
        out.append("None.")
    else:
        by_policy: dict[str, list[dict]] = {}
        for v in report["violations"]:
            by_policy.setdefault(v["policy"], []).append(v)
        for policy, vs in sorted(by_policy.items()):
            out.append(f"- **{policy}** ({vs[0]['enforcement']}): " + "; ".join(
                f"`{v['resource']}`: {v['message']}" for v in vs))
    return "\n".join(out)


def _throughput_table(deployments: list[dict]) -> list[str]:
    """Per deployment: decode and prefill rates of one replica, and with a load its latency, replicas
    and cost per million output tokens (sizing/performance.py)."""
    rows = [d for d in deployments if d.get("throughput")]
    if not rows:
        return []
    fmt = lambda x, f="{:,.0f}": "—" if x is None else f.format(x)  # noqa: E731
    out = ["", "### Throughput (one replica; with `load`: at the planned batch and replicas)", "",
           "| model | decode tok/s: 1 seq / full batch | prefill tok/s (one chunk) | load: batch, TTFT, TPOT | "
           "replicas for load | $ per 1M output tokens |",
           "|---|---|---|---|---|---|"]
    for d in rows:
        t = d["throughput"]
        if t["ttft_seconds"] is None:
            at_load = "no load stated"
        else:
            tpot = "" if t["tpot_seconds"] is None else f", TPOT {t['tpot_seconds'] * 1e3:.1f} ms"
            at_load = f"batch {t['batch_for_load']}, TTFT {t['ttft_seconds']:.3g} s{tpot}"
        out.append(f"| **{d['name']}** | {fmt(t['decode_tokens_per_s_single'])} / {fmt(t['decode_tokens_per_s_full'])} "
                   f"(at {d['max_model_len']} context, {d['concurrency']} seqs) | {fmt(t['prefill_tokens_per_s'])} | "
                   f"{at_load} | {fmt(t['replicas_for_load'], '{}')} | {fmt(t['usd_per_million_output_tokens'], '${:,.2f}')} |")
    return out


def _tree(resources: list[dict]) -> list[str]:
    children: dict[str | None, list[dict]] = {}
    for r in resources:
        children.setdefault(r["parent"], []).append(r)
    lines: list[str] = []

    def walk(parent, depth):
        for r in children.get(parent, []):
            lines.append(f"{'  ' * depth}{r['type'].split(':')[-1]} {r['name']}  ({r['type']})")
            if r["name"] != parent:
                walk(r["name"], depth + 1)

    walk(None, 0)
    return lines


if __name__ == "__main__":
    sys.exit(main())

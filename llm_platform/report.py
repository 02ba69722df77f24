"""The offline plan as a report: the JSON object of plan.py's contract and its text rendering, a PR comment.

Pure (no Pulumi): `plan.py --sizing-only` renders sizing, costs and advice from here without loading any SDK;
the full plan adds the recorded resources and the policy pack's verdicts.

The text is written for a reviewer, most important first: one verdict line (mandatory and advisory findings,
monthly cost), the deployments and throughput tables, why each choice was made and its alternatives, pins and
provenance (prod), notes, policy findings; the resource tree, which few read line by line, is folded in a
<details> block, grouped by component with counts per resource type.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from llm_platform.catalog import Catalog
from llm_platform.settings import StackConfig
from llm_platform.sizing.planner import DeploymentPlan


def build(stack_name: str, config: StackConfig, plans: list[DeploymentPlan], cat: Catalog,
          resources: list[dict] | None = None, violations: list[dict] | None = None) -> dict[str, Any]:
    """The plan.py --json object. Without resources and violations (--sizing-only) those keys are absent and
    `sizing_only` is true: nothing was recorded or judged, which an empty list would misstate."""
    report: dict[str, Any] = {
        "stack": stack_name,
        "environment": config.environment,
        "platform": config.platform,
        "region": None if config.platform == "docker" else config.region,   # a workstation has no region
        "monthly_cost_usd": round(sum(p.monthly_cost_usd for p in plans), 2),
        "monthly_cost_max_usd": round(sum(p.monthly_cost_max_usd for p in plans), 2),
        "prices_as_of": cat.prices_as_of,
        "deployments": [p.as_dict() for p in plans],
    }
    if config.platform == "docker" and config.local is not None:
        gpu = cat.gpus[config.local.gpu]
        report["local"] = {"gpu": gpu.name, "gpu_count": config.local.gpu_count,
                           "memory_gib": round(gpu.memory_gib, 2)}
    if resources is None:
        report["sizing_only"] = True
    else:
        report["resources"] = resources
        report["violations"] = violations or []
    report["verdict"] = verdict(report)
    return report


def verdict(report: dict) -> dict:
    vs = report.get("violations")
    mandatory = None if vs is None else sum(v["enforcement"] == "mandatory" for v in vs)
    advisory = None if vs is None else sum(v["enforcement"] != "mandatory" for v in vs)
    local = report["platform"] == "docker"
    cost = "on your workstation, no cloud cost" if local else f"${report['monthly_cost_usd']:,.2f}/month"
    if not local and report["monthly_cost_max_usd"] != report["monthly_cost_usd"]:
        cost += f" (up to ${report['monthly_cost_max_usd']:,.2f} at autoscaling max)"
    findings = "sizing only: resources and policies not evaluated" if vs is None else \
        f"{mandatory} mandatory, {advisory} advisory"
    return {"mandatory": mandatory, "advisory": advisory, "line": f"{findings} · {cost}"}


# ----------------------------------------------------------------------------- text

def render_text(report: dict) -> str:
    local = report["platform"] == "docker"
    deployments = report["deployments"]
    v = report["verdict"]
    ok = v["mandatory"] == 0 if v["mandatory"] is not None else None
    mark = {True: "✅", False: "❌", None: "📐"}[ok]
    where = (f"platform **docker** on {report['local']['gpu_count']} x {report['local']['gpu']} "
             f"({report['local']['memory_gib']:.1f} GiB)" if local and "local" in report else
             f"platform **{report['platform']}**, region **{report['region']}**, on-demand list prices as of "
             f"{report['prices_as_of']}")
    out = [f"{mark} **{v['line']}**", "",
           f"## llm-platform plan: stack `{report['stack']}`",
           f"environment **{report['environment']}**, {where}", ""]
    out += _deployments(deployments, local)
    out += _throughput(deployments, local)
    out += _choices(deployments, local)
    if report["environment"] == "prod" or any(d.get("provenance") for d in deployments):
        out += _pins(deployments)
    out += _notes(deployments)
    if "violations" in report:
        out += _violations(report["violations"])
    if "resources" in report:
        out += _resources(report["resources"])
    return "\n".join(out).rstrip() + "\n"


def _replicas(d: dict) -> str:
    lo, hi = d["replicas"]["min"], d["replicas"]["max"]
    nodes = d["nodes_per_replica"]
    count = f"{lo}" if lo == hi else f"{lo}-{hi}"
    return count + (f" x {nodes} nodes" if nodes > 1 else "")


def _deployments(deployments: list[dict], local: bool) -> list[str]:
    cost = "" if local else " $/month |"
    out = ["### Deployments", "",
           "| model | runtime | " + ("GPUs" if local else "instance x replicas | GPUs") + " | TP x PP | context x seqs "
           "| per-GPU GiB: weights + KV + overhead = need / usable |" + cost,
           "|---|---|---|" + ("" if local else "---|") + "---|---|---|" + ("---|" if not local else "")]
    for d in deployments:
        m, g = d["memory"], d["gpu"]
        fits = d["max_concurrency_at_full_context"]
        seqs = f"{d['concurrency']} (fits {fits})" if fits is not None else f"{d['concurrency']}"
        kv = "" if d["kv_cache_dtype"] == "auto" else f", KV {d['kv_cache_dtype']}"
        gpus = f"{g['count']} x {g['name']} {g['memory_gib']:.1f} GiB"
        place = gpus if local else f"{d['instance_type']} x {_replicas(d)} | {gpus}"
        out.append(f"| **{d['name']}** {d['model']} | {d['runtime']} {d['precision']}{kv} | {place} | "
                   f"{d['tensor_parallel_size']} x {d['pipeline_parallel_size']} | {d['max_model_len']} x {seqs} | "
                   f"{m['per_gpu_weights_gib']:.1f} + {m['per_gpu_kv_cache_gib']:.1f} + {m['overhead_gib']:.1f} = "
                   f"{m['per_gpu_required_gib']:.1f} / {m['per_gpu_usable_gib']:.1f} |"
                   + ("" if local else f" {d['monthly_cost_usd']:,.0f} |"))
    return out + [""]


def _fmt(x, f="{:,.0f}") -> str:
    return "—" if x is None else f.format(x)


def _throughput(deployments: list[dict], local: bool) -> list[str]:
    """One replica's rates; with a load, the operating point and how many replicas run and why. `needs 1 ·
    runs 2 (HA minimum)` says in one cell what two numbers side by side would seem to contradict."""
    rows = [d for d in deployments if d.get("throughput")]
    if not rows:
        return []
    price = "" if local else " $ per 1M output tokens |"
    out = ["### Throughput (one replica; with `load`: at the planned batch)", "",
           "| model | decode tok/s: 1 seq / full batch | prefill tok/s | at load: batch, TTFT, TPOT | "
           "replicas: load needs · running · max |" + price,
           "|---|---|---|---|---|" + ("---|" if not local else "")]
    for d in rows:
        t = d["throughput"]
        if t["ttft_seconds"] is None:
            at_load = "no load stated"
            reps = f"— · {d['replicas']['min']} · {d['replicas']['max']}"
        else:
            tpot = "" if t["tpot_seconds"] is None else f", {t['tpot_seconds'] * 1e3:.1f} ms"
            at_load = f"{t['batch_for_load']}, {t['ttft_seconds']:.3g} s{tpot}"
            need, lo, hi = t["replicas_for_load"], d["replicas"]["min"], d["replicas"]["max"]
            why = " (HA minimum)" if lo > need and (d.get("choice") or {}).get("replicas") == "load" else ""
            reps = f"{need} · {lo}{why} · {hi}"
        out.append(f"| **{d['name']}** | {_fmt(t['decode_tokens_per_s_single'])} / "
                   f"{_fmt(t['decode_tokens_per_s_full'])} | {_fmt(t['prefill_tokens_per_s'])} | {at_load} | {reps} |"
                   + ("" if local else f" {_fmt(t['usd_per_million_output_tokens'], '${:,.2f}')} |"))
    return out + [""]


def _choices(deployments: list[dict], local: bool) -> list[str]:
    """Why each deployment is what it is, and the cheapest alternatives (one per instance type) in one table."""
    chosen = [d for d in deployments if d.get("choice")]
    if not chosen:
        return []
    out = ["### Choices", ""]
    out += [f"- **{d['name']}**: {d['choice']['reason']}" for d in chosen]
    alts = [(d, i, a) for d in chosen for i, a in enumerate(d.get("alternatives", []))]
    if local or not alts:
        return out + [""]
    out += ["", "| model | instance | precision, KV | TP | seqs | replicas | $/month | $/1M out | TPOT ms |",
            "|---|---|---|---|---|---|---|---|---|"]
    for d, i, a in alts:
        first = i == 0              # the planner's choice leads its model's rows
        name = f"**{d['name']}**" if first else d["name"]
        out.append(f"| {name} | {a['instance_type']}{' (chosen)' if first else ''} | {a['precision']}, "
                   f"{a['kv_cache_dtype']} | {a['tensor_parallel_size']} | {a['concurrency']} | {a['replicas']} | "
                   f"{a['monthly_cost_usd']:,.0f} | {_fmt(a['usd_per_million_output_tokens'], '{:,.2f}')} | "
                   f"{_fmt(a['tpot_seconds'] and a['tpot_seconds'] * 1e3, '{:.1f}')} |")
    return out + [""]


def _pins(deployments: list[dict]) -> list[str]:
    """What a prod reviewer checks per model: the pinned revision, the manifest digest and who approved what."""
    out = ["### Pins and provenance", "",
           "| model | revision | SHA256SUMS digest | source | license | approved by | review |",
           "|---|---|---|---|---|---|---|"]
    for d in deployments:
        p = d.get("provenance") or {}
        rev = d.get("revision") or "**unpinned**"
        rev = rev if len(rev) <= 20 else f"`{rev[:19]}…`"
        digest = d.get("checksums_sha256")
        out.append(f"| **{d['name']}** | {rev} | {'`' + digest[:12] + '…`' if digest else '—'} | "
                   f"{p.get('source', '—')} | {p.get('license', '—')} | {p.get('approved_by', '—')} | "
                   f"{p.get('review_status', '—')} |")
    return out + [""]


def _notes(deployments: list[dict]) -> list[str]:
    notes = [(d["name"], n) for d in deployments for n in d["notes"]]
    if not notes:
        return []
    return ["### Notes", ""] + [f"- **{name}**: {n}" for name, n in notes] + [""]


def _violations(violations: list[dict]) -> list[str]:
    out = ["### Policy findings", ""]
    if not violations:
        return out + ["None.", ""]
    by_policy: dict[tuple[str, str], list[dict]] = {}
    for v in violations:
        by_policy.setdefault((v["enforcement"] != "mandatory", v["policy"]), []).append(v)
    for (_, policy), vs in sorted(by_policy.items()):
        messages = Counter(v["message"] for v in vs)
        parts = []
        for m in messages:       # a stack-level finding has no resource
            where = [f"`{v['resource']}`" for v in vs if v["message"] == m and v["resource"]]
            parts.append(f"{m} ({', '.join(where)})" if where else m)
        out.append(f"- **{policy}** ({vs[0]['enforcement']}, {len(vs)}): " + "; ".join(parts))
    return out + [""]


def _short(token: str) -> str:
    """aws:ec2/launchTemplate:LaunchTemplate -> ec2.LaunchTemplate; random:index/randomPassword:... -> random.X."""
    pkg, _, rest = token.partition(":")
    module, _, name = rest.rpartition(":")
    module = module.split("/")[0]
    return f"{pkg if module in ('index', '') else module}.{name}"


def _resources(resources: list[dict]) -> list[str]:
    """The tree of components, each with the resources directly under it counted by type."""
    children: dict[str | None, list[dict]] = {}
    for r in resources:
        children.setdefault(r["parent"], []).append(r)
    parents = {r["parent"] for r in resources}
    lines: list[str] = []

    def walk(parent: str | None, depth: int, seen: set):
        kids = children.get(parent, [])
        leaves = Counter(_short(r["type"]) for r in kids if r["name"] not in parents)
        if leaves:
            lines.append("  " * depth + ", ".join(f"{t} x {n}" for t, n in sorted(leaves.items())))
        for r in kids:
            if r["name"] in parents and r["name"] not in seen:
                lines.append(f"{'  ' * depth}{r['type'].split(':')[-1]} {r['name']}")
                walk(r["name"], depth + 1, seen | {r["name"]})

    walk(None, 0, set())
    types = Counter(_short(r["type"]) for r in resources)
    return ["<details>", f"<summary>Resources: {len(resources)} of {len(types)} types, by component</summary>", "",
            "```"] + lines + ["```", "</details>"]

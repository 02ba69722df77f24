#!/usr/bin/env python3
"""The offline plan's public contract, checked from a clone alone (`make contract`).

Runs `plan.py --json` for every shipped stack (`Pulumi.<stack>.yaml`), for the catalog and for a broken
config, in real processes as other tools would, and validates each output against schemas/plan.schema.json.
On top of the schema: shipped stacks exit 0 with no mandatory violation and every deployment fits its GPUs;
a broken config exits 2 with key paths and no traceback. Exit 0 when all hold; prints what falls short.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "schemas" / "plan.schema.json").read_text(encoding="utf-8"))


def plan(*args: str) -> tuple[int, object, str]:
    proc = subprocess.run([sys.executable, str(ROOT / "plan.py"), *args, "--json"], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    try:
        return proc.returncode, json.loads(proc.stdout), proc.stderr
    except json.JSONDecodeError:
        return proc.returncode, None, proc.stderr


def schema_problems(what: str, body: object) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [f"{what}: {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:200]}"
            for e in validator.iter_errors(body)]


def check() -> list[str]:
    problems: list[str] = []
    stacks = sorted(p.stem.removeprefix("Pulumi.") for p in ROOT.glob("Pulumi.*.yaml"))
    for stack in stacks:
        code, body, err = plan("--stack", stack)
        if not isinstance(body, dict):
            problems.append(f"{stack}: stdout is not one JSON object (exit {code}): {err.strip()[-300:]}")
            continue
        problems += schema_problems(stack, body)
        if code != 0 or any(v.get("enforcement") == "mandatory" for v in body.get("violations", [])):
            problems.append(f"{stack}: a shipped stack must plan with exit 0 and no mandatory violation (exit {code})")
        for d in body.get("deployments", []):
            m = d.get("memory", {})
            if m.get("per_gpu_required_gib", 0) > m.get("per_gpu_usable_gib", 0):
                problems.append(f"{stack}/{d.get('name')}: per-GPU need exceeds usable memory")
    code, body, _ = plan("--catalog")
    problems += schema_problems("catalog", body) if code == 0 else [f"catalog: exit {code}"]
    with tempfile.TemporaryDirectory() as tmp:
        broken = Path(tmp) / "Pulumi.broken.yaml"
        broken.write_text("config:\n  llm-platform:environment: prod\n  llm-platform:models:\n"
                          "    - name: Not A Dns Name\n      model: no-such-org/no-such-model\n"
                          "      max_model_len: -5\n")
        code, body, err = plan("--config", str(broken))
    if code != 2:
        problems.append(f"a broken config must exit 2, got {code}")
    problems += schema_problems("broken config", body)
    if "Traceback" in err:
        problems.append("a broken config printed a Python traceback")
    print(f"plan contract: {len(stacks)} stacks, {len(problems)} problems")
    return problems


if __name__ == "__main__":
    found = check()
    for p in found:
        print("FALLS SHORT:", p)
    sys.exit(1 if found else 0)

"""How tests/data/urns was made (not run by the tests): the URNs the pre-redesign program registers, per shipped
stack and per variant in variants/*.json, with the URNs a Pulumi engine makes (the whole parent type chain).

    git worktree add /tmp/old 5ee2385
    ln -s ../components /tmp/old/llm_platform/components; ln -s ../policies /tmp/old/llm_platform/policies
    cd /tmp && PYTHONPATH=/tmp/old <venv>/bin/python <this file> /tmp/old <repo>/tests/data/urns
"""
import copy
import json
import sys
from pathlib import Path

from llm_platform.offline import mocks
from llm_platform.settings import read_stack_file


def engine_urn(self, parent: str, type_: str, name: str) -> str:
    from pulumi.runtime.settings import get_project, get_stack
    chain = parent.split("::")[2] if parent else ""
    if chain and chain != "pulumi:pulumi:Stack":
        type_ = chain + "$" + type_
    return f"urn:pulumi:{get_stack()}::{get_project()}::{type_}::{name}"


def record(program: Path, raw: dict, stack: str) -> list[str]:
    urns: list[str] = []
    register = mocks.RecordingMonitor.RegisterResource

    def recording(self, request):
        response = register(self, request)
        urns.append(response.urn)
        return response
    mocks.RecordingMonitor.make_urn = engine_urn
    mocks.RecordingMonitor.RegisterResource = recording
    try:
        mocks.run_program(raw, stack=stack, program=program)
    finally:
        mocks.RecordingMonitor.RegisterResource = register
    return sorted(set(urns))


def variant_config(program: Path, spec: dict) -> dict:
    raw = read_stack_file(program / f"Pulumi.{spec['base']}.yaml")
    raw.update(copy.deepcopy(spec.get("set", {})))
    for key, value in spec.get("merge", {}).items():
        raw[key] = {**raw.get(key, {}), **value}
    return raw


if __name__ == "__main__":
    program, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    for path in sorted(program.glob("Pulumi.*.yaml")):
        stack = path.stem.removeprefix("Pulumi.")
        (out / f"{stack}.txt").write_text("".join(u + "\n" for u in record(program, read_stack_file(path), stack)))
    for path in sorted((out / "variants").glob("*.json")):
        spec = json.loads(path.read_text())
        urns = record(program, variant_config(program, spec), spec["stack"])
        path.with_suffix(".txt").write_text("".join(u + "\n" for u in urns))

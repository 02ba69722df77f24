"""The one Pulumi mocks harness: the tests and the offline plan (plan.py) both run the program
through it. It records every resource's type, name, parent and inputs (secrets marked), and
answers every invoke the program makes from local data, so nothing touches the network.
"""
from __future__ import annotations

import json
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

import catalog

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT_ID = "123456789012"
SECRET = "[secret]"
MOCK_AMI = "ami-0abcdef1234567890"


@dataclass
class Recorded:
    type: str
    name: str
    parent: Optional[str]
    inputs: dict            # as the engine sees them (camelCase); secret values replaced by "[secret]"
    raw_inputs: dict = field(repr=False, default_factory=dict)   # secrets included, for leak tests only
    custom: bool = True

    def as_dict(self) -> dict:
        return {"type": self.type, "name": self.name, "parent": self.parent, "inputs": self.inputs}


def _redact(value: Any) -> Any:
    if rpc.is_rpc_secret(value):
        return SECRET
    if isinstance(value, dict):
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    if rpc.is_rpc_secret(value):
        return _plain(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class RecordingMocks(pulumi.runtime.Mocks):
    """Answers resource registrations with plausible ids/ARNs and invokes from local data."""

    def __init__(self, region: str = "us-east-1"):
        self.region = region
        self.invokes: list[tuple[str, dict]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        if not args.custom:
            return "", {}
        service = args.typ.split(":")[1].split("/")[0] if ":" in args.typ else "mock"
        outputs = dict(args.inputs)
        outputs.setdefault("arn", f"arn:aws:{service}:{self.region}:{ACCOUNT_ID}:{args.name}")
        outputs.setdefault("name", args.name)
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.invokes.append((args.token, dict(args.args)))
        token, a = args.token, args.args
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{self.region}{s}" for s in "abcdef"]
            return {"names": names, "zoneIds": [f"use1-az{i}" for i in range(1, 7)], "id": self.region}
        if token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region, "id": self.region}
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:root", "userId": ACCOUNT_ID,
                    "id": ACCOUNT_ID}
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        if token == "aws:ssm/getParameter:getParameter":
            return {"name": a.get("name"), "value": MOCK_AMI, "insecureValue": MOCK_AMI, "type": "String",
                    "id": a.get("name")}
        if token == "aws:ec2/getInstanceType:getInstanceType":
            inst = catalog.load().instances[a["instanceType"]]
            return {"instanceType": inst.name, "defaultVcpus": inst.vcpus, "memorySize": inst.memory_mib,
                    "gpuses": [{"count": inst.gpu_count, "manufacturer": "NVIDIA", "name": inst.gpu,
                                "memorySize": inst.gpu_memory_mib}], "id": inst.name}
        if token == "aws:iam/getPolicyDocument:getPolicyDocument":
            return {"json": json.dumps(_policy_json(a)), "id": "policy"}
        raise NotImplementedError(f"the mocks harness has no answer for invoke {token}: add one in tests/mocks.py")


def _policy_json(a: dict) -> dict:
    statements = []
    for s in a.get("statements") or []:
        st = {"Effect": s.get("effect", "Allow")}
        for key, out in (("actions", "Action"), ("resources", "Resource"), ("notActions", "NotAction")):
            if s.get(key):
                st[out] = s[key]
        for p in s.get("principals") or []:
            st.setdefault("Principal", {})[p["type"]] = p["identifiers"]
        for c in s.get("conditions") or []:
            st.setdefault("Condition", {}).setdefault(c["test"], {})[c["variable"]] = c["values"]
        if s.get("sid"):
            st["Sid"] = s["sid"]
        statements.append(st)
    return {"Version": "2012-10-17", "Statement": statements}


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """MockMonitor that also records the parent and the secret-marked inputs of every resource."""

    def __init__(self, mocks: RecordingMocks):
        super().__init__(mocks)
        self.recorded: list[Recorded] = []

    def RegisterResource(self, request):
        if request.type != "pulumi:pulumi:Stack":
            inputs = rpc.deserialize_properties(request.object)
            parent = request.parent.split("::")[-1] if request.parent else None
            if request.parent and request.parent.split("::")[-2].endswith("pulumi:pulumi:Stack"):
                parent = None
            self.recorded.append(Recorded(request.type, request.name, parent, _redact(inputs), _plain(inputs),
                                          bool(request.custom)))
        return super().RegisterResource(request)


@dataclass
class Recording:
    resources: list[Recorded]
    invokes: list[tuple[str, dict]]

    def of_type(self, type_: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str) -> Recorded:
        matches = [r for r in self.resources if r.name == name]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]


def config_for_runtime(raw: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Stack-file config as the Pulumi engine hands it to a program: strings, objects as JSON,
    `{secure: ...}` values as secret keys (the offline plan cannot decrypt them)."""
    values, secret_keys = {}, []
    for key, value in raw.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            values[key] = SECRET
            secret_keys.append(key)
        elif isinstance(value, str):
            values[key] = value
        else:
            values[key] = json.dumps(value)
    return values, secret_keys


def run_program(raw_config: dict[str, Any], stack: str = "test", *, program: Path = ROOT / "__main__.py",
                preview: bool = False) -> Recording:
    """Run the Pulumi program in-process under the recording mocks and return what it registered."""
    region = raw_config.get("aws:region", "us-east-1")
    mocks = RecordingMocks(region if isinstance(region, str) else "us-east-1")
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.reset_options(project="llm-platform", stack=stack, preview=preview)
    values, secret_keys = config_for_runtime(raw_config)
    pulumi.runtime.set_all_config(values, secret_keys)
    pulumi.runtime.set_mocks(mocks, project="llm-platform", stack=stack, preview=preview, monitor=monitor)
    _sync_await(run_pulumi_func(lambda: runpy.run_path(str(program), run_name="__main__")))
    return Recording(monitor.recorded, mocks.invokes)

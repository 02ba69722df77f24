"""The one Pulumi mocks harness: the tests and the offline plan (plan.py) both run programs
through it, ours or any other Pulumi Python program directory. It records every resource's type, name,
parent, URN, aliases and inputs (secrets marked), and
answers every invoke the program makes from local data, so nothing touches the network.
"""
from __future__ import annotations

import contextlib
import json
import logging
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from llm_platform import catalog

ACCOUNT_ID = "123456789012"
SECRET = "[secret]"
MOCK_AMI = "ami-0abcdef1234567890"
# the engine's per-resource debug chatter, which the mocks would otherwise route through the root logger
_QUIET = logging.getLogger("llm-platform.mocks.engine")
_QUIET.disabled = True


@dataclass
class Recorded:
    type: str
    name: str
    parent: str | None
    inputs: dict            # as the engine sees them (camelCase); secret values replaced by "[secret]"
    raw_inputs: dict = field(repr=False, default_factory=dict)   # secrets included, for leak tests only
    custom: bool = True
    urn: str = ""           # as the engine would make it (full parent type chain)
    parent_urn: str = ""
    aliases: list = field(repr=False, default_factory=list)   # AliasSpec/str, as sent by the SDK

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
        self.subnet_zones: dict[str, str] = {}      # subnet id -> its availability zone (for getSubnet)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        if not args.custom:
            return "", {}
        outputs = dict(args.inputs)
        outputs.update(computed_outputs(args.typ, args.name, args.inputs, self.region))
        rid = outputs.pop("__id", f"{args.name}-id")
        if args.typ == "aws:ec2/subnet:Subnet":
            self.subnet_zones[rid] = args.inputs.get("availabilityZone", f"{self.region}a")
        return rid, outputs

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
        if token == "aws:ec2/getSubnet:getSubnet":
            sid = str(a.get("id"))
            return {"id": sid, "availabilityZone": self.subnet_zones.get(sid, f"{self.region}a")}
        if token == "aws:iam/getPolicyDocument:getPolicyDocument":
            return {"json": json.dumps(_policy_json(a)), "id": "policy"}
        if token == "aws:secretsmanager/getSecretVersion:getSecretVersion":
            # alphanumeric like the platform's API keys (RandomPassword, special=False): the proxy refuses others
            return {"secretId": a.get("secretId"), "secretString": f"MOCKSECRET{_hex(str(a.get('secretId')), 40)}",
                    "arn": a.get("secretId"), "versionId": "v1", "versionStage": "AWSCURRENT", "id": "v1"}
        if token == "aws:ecr/getImages:getImages":
            # the deploy workflow pushes this commit's gate image before `pulumi up` (.github/scripts/deploy-gate.sh)
            from llm_platform.verify.jobs import image_tag
            tag = image_tag()
            digest = "sha256:" + _hex(f"{a.get('repositoryName')}:{tag}", 64)
            return {"repositoryName": a.get("repositoryName"), "id": a.get("repositoryName"),
                    "imageIds": [{"imageTag": tag, "imageDigest": digest}]}
        raise NotImplementedError(f"the mocks harness has no answer for invoke {token}: "
                                  "add one in llm_platform/offline/mocks.py")


def _hex(name: str, n: int = 16) -> str:
    import hashlib
    return hashlib.sha256(name.encode()).hexdigest()[:n]


def computed_outputs(typ: str, name: str, inputs: dict, region: str) -> dict:
    """What AWS (or the provider) would compute for a new resource: names, ARNs, ids, secrets."""
    acct, h = ACCOUNT_ID, _hex(name)
    if typ == "aws:s3/bucket:Bucket":
        bucket = inputs.get("bucket") or f"{inputs.get('bucketPrefix', name)}{h[:8]}"
        return {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}", "__id": bucket}
    if typ == "aws:ec2/vpcEndpoint:VpcEndpoint":
        return {"prefixListId": "pl-63a5400a", "__id": f"vpce-{h}"}
    if typ == "aws:lb/loadBalancer:LoadBalancer":
        return {"arn": f"arn:aws:elasticloadbalancing:{region}:{acct}:loadbalancer/app/{name}/{h}",
                "arnSuffix": f"app/{name}/{h}", "dnsName": f"internal-{name}-{h[:8]}.{region}.elb.amazonaws.com",
                "zoneId": "Z35SXDOTRQ7X7K"}
    if typ == "aws:lb/targetGroup:TargetGroup":
        return {"arn": f"arn:aws:elasticloadbalancing:{region}:{acct}:targetgroup/{name}/{h}",
                "arnSuffix": f"targetgroup/{name}/{h}"}
    if typ == "aws:autoscaling/group:Group":
        return {"name": f"{inputs.get('namePrefix', name)}{h[:8]}"}
    if typ == "aws:ec2/launchTemplate:LaunchTemplate":
        return {"latestVersion": 1, "__id": f"lt-{h}"}
    if typ == "aws:kms/key:Key":
        return {"keyId": f"{h[:8]}-{h[8:12]}-4{h[12:15]}-8{h[:3]}-{h}"[:36],
                "arn": f"arn:aws:kms:{region}:{acct}:key/{h}"}
    if typ == "aws:secretsmanager/secret:Secret":
        return {"arn": f"arn:aws:secretsmanager:{region}:{acct}:secret:{inputs.get('name', name)}-{h[:6]}"}
    if typ == "aws:iam/role:Role":
        return {"arn": f"arn:aws:iam::{acct}:role/{name}", "name": name}
    if typ == "aws:iam/instanceProfile:InstanceProfile":
        return {"arn": f"arn:aws:iam::{acct}:instance-profile/{name}"}
    if typ == "aws:sns/topic:Topic":
        return {"arn": f"arn:aws:sns:{region}:{acct}:{inputs.get('name', name)}"}
    if typ == "aws:cloudwatch/logGroup:LogGroup":
        return {"arn": f"arn:aws:logs:{region}:{acct}:log-group:{inputs.get('name', name)}"}
    if typ == "aws:ssm/parameter:Parameter":
        return {"arn": f"arn:aws:ssm:{region}:{acct}:parameter{inputs.get('name', name)}"}
    if typ == "aws:acm/certificate:Certificate":
        return {"arn": f"arn:aws:acm:{region}:{acct}:certificate/{h}"}
    if typ == "aws:wafv2/webAcl:WebAcl":
        return {"arn": f"arn:aws:wafv2:{region}:{acct}:regional/webacl/{name}/{h}"}
    if typ == "aws:route53/zone:Zone":
        return {"zoneId": f"Z{h.upper()[:13]}"}
    if typ == "aws:cloudwatch/dashboard:Dashboard":
        return {"dashboardName": inputs.get("dashboardName", name)}
    if typ == "random:index/randomPassword:RandomPassword":
        return {"result": f"MOCKSECRET{h}{h}"[: int(inputs.get("length", 32))]}
    if typ == "tls:index/privateKey:PrivateKey":
        return {"privateKeyPem": f"-----BEGIN PRIVATE KEY-----\nMOCKKEY{h}\n-----END PRIVATE KEY-----\n",
                "publicKeyPem": f"-----BEGIN PUBLIC KEY-----\n{h}\n-----END PUBLIC KEY-----\n"}
    if typ in ("tls:index/selfSignedCert:SelfSignedCert", "tls:index/locallySignedCert:LocallySignedCert"):
        return {"certPem": f"-----BEGIN CERTIFICATE-----\nMOCKCERT{h}\n-----END CERTIFICATE-----\n"}
    if typ == "tls:index/certRequest:CertRequest":
        return {"certRequestPem": f"-----BEGIN CERTIFICATE REQUEST-----\n{h}\n-----END CERTIFICATE REQUEST-----\n"}
    if typ == "aws:eks/cluster:Cluster":
        return {"arn": f"arn:aws:eks:{region}:{acct}:cluster/{inputs.get('name', name)}",
                "endpoint": f"https://{h.upper()[:32]}.gr7.{region}.eks.amazonaws.com",
                "certificateAuthority": {"data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1PQ0sKLS0tLS1FTkQ="},
                "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/{h.upper()}"}]}],
                "clusterSecurityGroupId": f"sg-{h[:17]}", "status": "ACTIVE"}
    if typ == "kubernetes:core/v1:Service" and (inputs.get("spec") or {}).get("type") == "LoadBalancer":
        return {"status": {"loadBalancer": {"ingress": [
            {"hostname": f"k8s-{name[:20]}-{h[:10]}.elb.{region}.amazonaws.com"}]}}}
    if typ.startswith("kubernetes:") or typ.startswith("docker:"):
        return {}
    if typ == "aws:ec2/placementGroup:PlacementGroup":
        return {"name": f"{name}-{h[:8]}", "arn": f"arn:aws:ec2:{region}:{acct}:placement-group/{name}"}
    service = typ.split(":")[1].split("/")[0] if ":" in typ else "mock"
    return {"arn": f"arn:aws:{service}:{region}:{acct}:{name}"}


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


@dataclass(frozen=True)
class AliasSpec:
    """One alias a resource declared (the SDK's alias_pb2.Alias.Spec), with the engine's defaults left as None."""
    name: str | None = None
    type: str | None = None
    parent_urn: str | None = None
    no_parent: bool = False
    stack: str | None = None
    project: str | None = None


ROOT_STACK_TYPE = "pulumi:pulumi:Stack"


def _qualified_type(urn: str) -> str:
    return urn.split("::")[2]


def make_urn(stack: str, project: str, parent_urn: str, type_: str, name: str) -> str:
    """A URN as the Pulumi engine makes it (step_generator.generateURN): the parent's whole qualified type
    chain, except the root stack's, then `$` and the resource's own type. (pulumi's MockMonitor keeps only
    the parent's last type, which is not what a deployment's state holds.)"""
    if parent_urn and _qualified_type(parent_urn) != ROOT_STACK_TYPE:
        type_ = _qualified_type(parent_urn) + "$" + type_
    return f"urn:pulumi:{stack}::{project}::{type_}::{name}"


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """MockMonitor that also records the parent, URN, aliases and the secret-marked inputs of every resource."""

    def __init__(self, mocks: RecordingMocks):
        super().__init__(mocks)
        self.recorded: list[Recorded] = []
        self.stack_urn = ""
        self.registered_outputs: dict[str, set[str]] = {}     # component URN -> keys it registered

    def RegisterResourceOutputs(self, request):
        self.registered_outputs[request.urn] = set(request.outputs.fields.keys())
        return super().RegisterResourceOutputs(request)

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        from pulumi.runtime.settings import get_project, get_stack
        return make_urn(get_stack(), get_project(), parent, type_, name)

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type == ROOT_STACK_TYPE:
            self.stack_urn = response.urn
        else:
            inputs = rpc.deserialize_properties(request.object)
            parent = request.parent.split("::")[-1] if request.parent else None
            if request.parent and _qualified_type(request.parent) == ROOT_STACK_TYPE:
                parent = None
            self.recorded.append(Recorded(request.type, request.name, parent, _redact(inputs), _plain(inputs),
                                          bool(request.custom), response.urn, request.parent,
                                          [_alias(a) for a in request.aliases]))
        return response


def _alias(alias) -> AliasSpec | str:
    if alias.WhichOneof("alias") == "urn":
        return alias.urn
    spec = alias.spec
    return AliasSpec(name=spec.name or None, type=spec.type or None, parent_urn=spec.parentUrn or None,
                     no_parent=spec.noParent, stack=spec.stack or None, project=spec.project or None)


def _collapse(r: Recorded, alias: AliasSpec | str) -> str:
    """One declared alias as a URN, the engine's defaults filled from the resource (collapseAliasToUrn)."""
    if isinstance(alias, str):
        return alias
    stack, project = r.urn.split("::")[0].split(":")[2], r.urn.split("::")[1]
    parent = "" if alias.no_parent else (alias.parent_urn or r.parent_urn)
    return make_urn(alias.stack or stack, alias.project or project, parent, alias.type or r.type,
                    alias.name or r.name)


def _inherited(r: Recorded, child_type: str, child_name: str, parent_alias: str) -> str:
    """A child's alias under one alias of its parent (inheritedChildAlias): a `<parent>-<role>` name follows the
    parent's old name."""
    stack, project = r.urn.split("::")[0].split(":")[2], r.urn.split("::")[1]
    parent_name = r.parent_urn.split("::")[-1]
    name = child_name
    if child_name.startswith(parent_name):
        name = parent_alias.split("::")[-1] + child_name[len(parent_name):]
    return make_urn(stack, project, parent_alias, child_type, name)


def alias_urns(resources: list[Recorded]) -> dict[str, set[str]]:
    """Every URN each resource answers to besides its own, computed as the engine does when a program sends alias
    specs (step_generator.generateAliases): its own aliases, plus every alias of its parent carried down to it
    (a child named `<parent name>-<role>` follows its parent's old name), plus each own alias under each parent
    alias. Keyed by the resource's URN."""
    out: dict[str, set[str]] = {}
    for r in resources:                       # registration order: parents before children
        own = [_collapse(r, a) for a in r.aliases]
        found = list(own)
        for parent_alias in sorted(out.get(r.parent_urn, ())):
            found.append(_inherited(r, r.type, r.name, parent_alias))
            for urn in own:
                found.append(_inherited(r, _qualified_type(urn).split("$")[-1], urn.split("::")[-1], parent_alias))
        out[r.urn] = set(found) - {r.urn}
    return out


@dataclass
class Recording:
    resources: list[Recorded]
    invokes: list[tuple[str, dict]]
    stack_urn: str = ""
    registered_outputs: dict[str, set[str]] = field(default_factory=dict)
    exports: list[str] = field(default_factory=list)      # names the program exported (pulumi.export)

    def of_type(self, type_: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == type_]

    def named(self, name: str, type_: str | None = None) -> Recorded:
        matches = [r for r in self.resources if r.name == name and (type_ is None or r.type == type_)]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r}")
        return matches[0]


def config_for_runtime(raw: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Stack-file config as the Pulumi engine hands it to a program: strings, objects as JSON,
    `{secure: ...}` values as secret keys. The offline plan cannot decrypt them: the program gets a
    stand-in value, marked secret, which the leak tests then look for everywhere."""
    values, secret_keys = {}, []
    for key, value in raw.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            values[key] = f"MOCKSECRET-config-{key.rsplit(':', 1)[-1]}"
            secret_keys.append(key)
        elif isinstance(value, str):
            values[key] = value
        else:
            values[key] = json.dumps(value)
    return values, secret_keys


def project_of(program_dir: Path) -> tuple[str, Path]:
    """The project name and the directory holding `__main__.py`, as the Pulumi CLI reads them from
    Pulumi.yaml (`name`, and `main` when the program lives in a subdirectory)."""
    import yaml
    meta_path = program_dir / "Pulumi.yaml"
    if not meta_path.exists():
        raise FileNotFoundError(f"{program_dir}: no Pulumi.yaml (a Pulumi program directory holds Pulumi.yaml and "
                                f"__main__.py)")
    meta = yaml.safe_load(meta_path.read_text(encoding="utf-8")) or {}
    runtime = meta.get("runtime")
    runtime_name = runtime.get("name") if isinstance(runtime, dict) else runtime
    if runtime_name != "python":
        raise ValueError(f"{meta_path}: runtime is {runtime_name!r}; the offline harness runs Python programs")
    main_dir = program_dir / str(meta.get("main") or ".")
    if not (main_dir / "__main__.py").exists():
        raise FileNotFoundError(f"{main_dir}: no __main__.py")
    return str(meta.get("name") or program_dir.name), main_dir


def run_program(raw_config: dict[str, Any], stack: str = "test", *, program: Path | str = ".",
                project: str | None = None, preview: bool = False) -> Recording:
    """Run a Pulumi Python program directory in-process under the recording mocks and return what it registered.

    The program runs as the Pulumi CLI runs it: from its own directory, as `__main__`, with that directory
    first on the import path for the duration (runpy's own behaviour for a directory)."""
    program_dir = Path(program).resolve()
    name, main_dir = project_of(program_dir)
    project = project or name
    region = raw_config.get("aws:region", "us-east-1")
    mocks = RecordingMocks(region if isinstance(region, str) else "us-east-1")
    monitor = RecordingMonitor(mocks)
    pulumi.runtime.reset_options(project=project, stack=stack, preview=preview)
    values, secret_keys = config_for_runtime(raw_config)
    pulumi.runtime.set_all_config(values, secret_keys)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview, monitor=monitor,
                             logger=_QUIET)
    def main() -> None:     # the program's globals (run_path's value) are no awaitable for run_pulumi_func
        runpy.run_path(str(main_dir), run_name="__main__")

    with contextlib.chdir(main_dir):
        _sync_await(run_pulumi_func(main))
    root = pulumi.runtime.settings.get_root_resource()
    exports = list(getattr(root, "outputs", {}) or {})
    return Recording(monitor.recorded, mocks.invokes, monitor.stack_urn, monitor.registered_outputs, exports)

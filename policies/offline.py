"""The pack without the Pulumi CLI: judge a `pulumi stack export` document or a plan.py recording
with the same rules and levels (policies/engine.py).

    from llm_platform.policies import offline
    offline.evaluate_recording(recording, environment="prod")   # plan.py
    offline.evaluate_export(document, config=None)               # python -m policies.analyze
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeAlias

import yaml

from .core import JSON, RECORDED_SECRET, Resource, normalize
from .engine import evaluate

SKIP_TYPES = ("pulumi:pulumi:Stack",)


class ExportError(ValueError):
    """The document is not a stack export this tool can read."""


# ----------------------------------------------------------------------------- plan.py recordings


class RecordedResource(Protocol):
    """What the engine reads of one registration in a recording (llm_platform.offline.mocks.Recorded)."""
    @property
    def type(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def parent(self) -> str | None: ...
    @property
    def inputs(self) -> Mapping[str, Any]: ...


class Recording(Protocol):
    """A recorded program run (llm_platform.offline.mocks.Recording), read structurally: no import of the harness."""
    @property
    def resources(self) -> Sequence[RecordedResource]: ...


# the harness's computed_outputs(type, name, inputs, region): the ids and outputs a provider would return
ComputedOutputs: TypeAlias = Callable[[str, str, Any, str], Mapping[str, Any]]


def recording_resources(recording: Recording) -> list[Resource]:
    """Resources of a tests.mocks.Recording. Inputs carry "[secret]" for secrets. A recording has no
    outputs, but other resources' inputs hold the ids and ARNs the harness computed for them; the harness's
    own `computed_outputs` (when importable) gives them back, so references resolve as in a real stack."""
    computed = _harness_outputs()
    region = _region_of(recording)
    out: list[Resource] = []
    for rec in recording.resources:
        if not getattr(rec, "custom", True):
            continue        # component resources hold no properties the rules read
        props = normalize(rec.inputs, secret_marker=RECORDED_SECRET)
        props = props if isinstance(props, dict) else {}
        rid = f"{rec.name}-id"
        if computed is not None:
            try:
                extra = dict(computed(rec.type, rec.name, getattr(rec, "raw_inputs", None) or rec.inputs, region))
            except Exception:       # noqa: BLE001 - the harness's helper is best effort here
                extra = {}
            rid = extra.pop("__id", rid)
            props = {**normalize(extra), **props}
        out.append(Resource(type=rec.type, name=rec.name, props=props, urn=None, id=rid, parent=rec.parent,
                            protect=None, extra_ids=(rec.name,)))
    return out


def _harness_outputs() -> ComputedOutputs | None:
    try:
        from llm_platform.offline.mocks import computed_outputs
    except Exception:       # noqa: BLE001 - any harness without the helper: ids fall back to "<name>-id"
        return None
    return computed_outputs


def _region_of(recording: Recording) -> str:
    counts: dict[str, int] = {}
    for rec in recording.resources:
        for m in re.finditer(r"arn:aws[\w-]*:[\w-]+:([a-z]{2}(?:-[a-z]+)+-\d):", json.dumps(rec.inputs)):
            counts[m.group(1)] = counts.get(m.group(1), 0) + 1
    return max(counts, key=lambda region: counts[region]) if counts else "us-east-1"


def evaluate_recording(recording: Recording, environment: str | None = None,
                       config: JSON | None = None) -> list[JSON]:
    """Violations of a recorded program run, as plan.py reports them: {policy, enforcement, resource, message}."""
    violations, _ = evaluate(recording_resources(recording), config=config, environment=environment)
    return [{"policy": v["policy"], "enforcement": v["enforcement"], "resource": v["resource"],
             "message": v["message"]} for v in violations]


# ----------------------------------------------------------------------------- stack exports


def export_resources(doc: Any) -> list[Resource]:
    """Resources of a `pulumi stack export` document (version 3; 1 and 2 have the same resource shape).

    A resource's properties are its outputs overlaid with its inputs: inputs are what the program
    declared, outputs fill what the provider computed. Secrets stay in their encrypted envelope and read
    as SECRET; an export made with --show-secrets carries plaintext, which is used."""
    if not isinstance(doc, dict):
        raise ExportError("not a stack export: the document is not a JSON object")
    version = doc.get("version")
    if version is not None and version not in (1, 2, 3):
        raise ExportError(f"unsupported stack export version {version!r} (this tool reads versions 1-3)")
    dep = doc.get("deployment", doc.get("checkpoint", {}).get("latest") if isinstance(doc.get("checkpoint"), dict)
                  else None)
    if not isinstance(dep, dict):
        raise ExportError("not a stack export: no `deployment` object (expected the output of `pulumi stack export`)")
    raw = dep.get("resources")
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ExportError("not a stack export: `deployment.resources` is not a list")
    out: list[Resource] = []
    for i, r in enumerate(raw):
        if not isinstance(r, dict) or not isinstance(r.get("type"), str):
            raise ExportError(f"deployment.resources[{i}] has no `type`")
        t = r["type"]
        if t in SKIP_TYPES or t.startswith("pulumi:providers:"):
            continue
        if r.get("delete") is True:
            continue     # pending deletion: no longer part of the stack
        urn = r["urn"] if isinstance(r.get("urn"), str) else f"urn:pulumi:export::export::{t}::resource-{i}"
        name = urn.rsplit("::", 1)[-1]
        outputs = normalize(r.get("outputs") or {})
        inputs = normalize(r.get("inputs") or {})
        props = {**(outputs if isinstance(outputs, dict) else {}), **(inputs if isinstance(inputs, dict) else {})}
        if t in ("aws:ec2/securityGroup:SecurityGroup",) and isinstance(inputs, dict) and inputs:
            # the provider reports rules of separate SecurityGroupIngressRule resources in `ingress` too
            for k in ("ingress", "egress"):
                if k not in inputs:
                    props.pop(k, None)
        pdeps = r["propertyDependencies"] if isinstance(r.get("propertyDependencies"), dict) else {}
        out.append(Resource(
            type=t, name=name, props=props, urn=urn,
            id=r.get("id") if isinstance(r.get("id"), str) else None,
            parent=r.get("parent") if isinstance(r.get("parent"), str) else None,
            protect=bool(r.get("protect")) or bool(r.get("retainOnDelete")),
            property_dependencies={k: [u for u in v if isinstance(u, str)] for k, v in pdeps.items()
                                   if isinstance(v, list)},
            dependencies=[u for u in r.get("dependencies") or [] if isinstance(u, str)],
        ))
    return out


# ----------------------------------------------------------------------------- resource lists and manifests


def resource_list(doc: Any) -> list[Resource]:
    """A recorded resource list: {"resources": [{"type", "name", "inputs", "outputs"?, "id"?}]}, the shape of
    a program's registrations (e.g. transcribed from a TypeScript program). Outputs fill what the provider
    would compute (auto-names, ids); inputs win where both say."""
    if not isinstance(doc, dict) or not isinstance(doc.get("resources"), list):
        raise ExportError("not a resource list: expected {\"resources\": [{\"type\", \"name\", \"inputs\"}]}")
    out: list[Resource] = []
    for i, r in enumerate(doc["resources"]):
        if not isinstance(r, dict) or not isinstance(r.get("type"), str) or not isinstance(r.get("name"), str):
            raise ExportError(f"resources[{i}] needs a `type` and a `name`")
        if r["type"] in SKIP_TYPES or r["type"].startswith("pulumi:providers:"):
            continue
        outputs = normalize(r.get("outputs") or {})
        inputs = normalize(r.get("inputs") or {})
        props = {**(outputs if isinstance(outputs, dict) else {}), **(inputs if isinstance(inputs, dict) else {})}
        urn = f"urn:pulumi:recorded::program::{r['type']}::{r['name']}"
        out.append(Resource(type=r["type"], name=r["name"], props=props, urn=urn,
                            id=r.get("id") if isinstance(r.get("id"), str) else None,
                            protect=r.get("protect") if isinstance(r.get("protect"), bool) else None,
                            extra_ids=(r["name"],)))
    return out


def manifest_resources(docs: Any) -> list[Resource]:
    """Kubernetes manifests (what `kubectl apply -f` takes: a list of objects, `kind: List` included) as the
    resources pulumi-kubernetes would register: type kubernetes:<group>/<version>:<Kind>, named by
    metadata.name, the object itself as inputs."""
    out: list[Resource] = []
    items: list[Any] = []
    for d in docs if isinstance(docs, list) else [docs]:
        if isinstance(d, dict) and d.get("kind") == "List" and isinstance(d.get("items"), list):
            items.extend(d["items"])
        elif d is not None:
            items.append(d)
    for i, d in enumerate(items):
        if not isinstance(d, dict) or not isinstance(d.get("kind"), str) or not isinstance(d.get("apiVersion"), str):
            raise ExportError(f"manifest document {i} has no apiVersion / kind")
        api = d["apiVersion"]
        group_version = api if "/" in api else f"core/{api}"
        name = (d.get("metadata") or {}).get("name") or f"{d['kind'].lower()}-{i}"
        t = f"kubernetes:{group_version}:{d['kind']}"
        out.append(Resource(type=t, name=str(name), props=normalize(d),
                            urn=f"urn:pulumi:manifests::kubectl::{t}::{name}", extra_ids=(str(name),)))
    return out


def load_document(text: str, path: str = "") -> list[Resource]:
    """Resources of any document the offline tools read: a `pulumi stack export`, a recorded resource list, or
    Kubernetes manifests (YAML, multi-document)."""
    stripped = text.lstrip()
    if stripped.startswith("{") or stripped.startswith("["):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ExportError(f"not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
        if isinstance(doc, dict) and ("deployment" in doc or "checkpoint" in doc or "version" in doc):
            return export_resources(doc)
        if isinstance(doc, dict) and "resources" in doc:
            return resource_list(doc)
        if isinstance(doc, dict) and "kind" in doc and "apiVersion" in doc:
            return manifest_resources([doc])
        if not isinstance(doc, dict):
            raise ExportError("not a stack export: the document is not a JSON object")
        return export_resources(doc)
    try:
        docs = list(yaml.safe_load_all(text))
    except Exception as exc:       # noqa: BLE001 - any YAML error: the file is not a manifest set
        raise ExportError(f"neither JSON nor YAML manifests ({type(exc).__name__})") from None
    return manifest_resources(docs)


def evaluate_export(doc: Any, config: JSON | None = None,
                    environment: str | None = None) -> tuple[list[JSON], list[JSON]]:
    return evaluate(export_resources(doc), config=config, environment=environment)

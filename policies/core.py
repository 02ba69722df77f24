"""The one engine: resource views, rule metadata, value helpers and levels.

Every rule is a plain function over `Resource` views (resource rules) or a `Stack` of them (stack
rules). Three adapters feed the same functions:

- `policies/crossguard.py`: the Pulumi CLI (`pulumi preview --policy-pack policies`), props are the
  engine's inputs (resource rules) or outputs (stack rules), unknowns during preview;
- `policies/offline.py`: `pulumi stack export` documents (`python -m policies.analyze`) and the
  recordings of `plan.py`.

Values are normalised once, here: unknowns (preview) become `UNKNOWN`, secrets that cannot be read
(a stack export's encrypted envelope, the recording's "[secret]") become `SECRET`. Rules never see
Pulumi's sentinel strings or proxies. No Pulumi import in this module.
"""
from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

# A JSON object as the engine reads it (resource props, policy config, schema fragments): keys are strings,
# values arbitrary JSON, UNKNOWN or SECRET.
JSON: TypeAlias = dict[str, Any]

# ----------------------------------------------------------------------------- sentinels


class _Sentinel:
    __slots__ = ("label",)

    def __init__(self, label: str):
        self.label = label

    def __repr__(self) -> str:
        return self.label

    def __bool__(self) -> bool:
        # A present value whose content cannot be read: truthy, so `x or default` keeps it; rules test
        # `opaque(x)` / `x is UNKNOWN` before they read a value.
        return True

    def __deepcopy__(self, memo: dict[int, Any]) -> _Sentinel:
        return self

    def __copy__(self) -> _Sentinel:
        return self


Sentinel: TypeAlias = _Sentinel   # the type of UNKNOWN and SECRET
UNKNOWN = _Sentinel("<unknown>")   # not known until the update (preview), e.g. an ARN of a new resource
SECRET = _Sentinel("<secret>")     # a secret whose plaintext the analysis cannot read

# A judgement that may be undecidable: True / False, or UNKNOWN / SECRET when the deciding value cannot be read.
Tristate: TypeAlias = "bool | Sentinel"

# Pulumi's wire sentinels for unknown values (pulumi/sdk rpc.py, pulumi_policy/proxy.py).
UNKNOWN_SENTINELS = frozenset({
    "04da6b54-80e4-46f7-96ec-b56ff0331ba9",   # string (also the generic one)
    "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",   # boolean
    "3eeb2bf0-c639-47a8-9e75-3b44932eb421",   # number
    "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",   # array
    "030794c1-ac77-496b-92df-f27374a8bd58",   # asset
    "e48ece36-62e2-4504-bad9-02848725956a",   # archive
    "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",   # object
})
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
ASSET_SIG = "c44067f5952c0a294b673a41bacd8c17"
ARCHIVE_SIG = "0def7320c3a5731c473e5ecbe6d01bc7"
RECORDED_SECRET = "[secret]"          # tests/mocks.py replaces secret inputs by this string


def normalize(value: Any, *, secret_marker: str | None = None) -> Any:
    """Plain JSON-like data with UNKNOWN / SECRET in place of Pulumi's sentinels and envelopes.

    A secret envelope with a `plaintext` (an export made with --show-secrets) yields its value; one
    with only `ciphertext` yields SECRET. Assets yield their text (or None); archives None.
    """
    if isinstance(value, _Sentinel):
        return value
    if isinstance(value, str):
        if value in UNKNOWN_SENTINELS:
            return UNKNOWN
        if secret_marker is not None and value == secret_marker:
            return SECRET
        return value
    if isinstance(value, dict):
        sig = value.get(SIG_KEY)
        if sig == SECRET_SIG:
            if "plaintext" in value and isinstance(value["plaintext"], str):
                try:
                    return normalize(json.loads(value["plaintext"]), secret_marker=secret_marker)
                except json.JSONDecodeError:
                    return value["plaintext"]
            if "value" in value:
                return normalize(value["value"], secret_marker=secret_marker)
            return SECRET
        if sig == ASSET_SIG:
            return value.get("text")
        if sig == ARCHIVE_SIG:
            return None
        return {k: normalize(v, secret_marker=secret_marker) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalize(v, secret_marker=secret_marker) for v in value]
    return value


def is_unknown(v: Any) -> bool:
    return v is UNKNOWN


def is_secret(v: Any) -> bool:
    return v is SECRET


def opaque(v: Any) -> bool:
    """Cannot be inspected: unknown or an unreadable secret."""
    return v is UNKNOWN or v is SECRET


# ----------------------------------------------------------------------------- value helpers

_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def get(data: Any, path: str, default: Any = None) -> Any:
    """`get(props, "metadataOptions.httpTokens")`, `get(p, "networkInterfaces[0].subnetId")`.

    Returns UNKNOWN / SECRET when the path runs through one (the whole object is opaque), `default`
    when a key is absent. Dict keys also match case-insensitively on the first letter, so the same
    path reads camelCase (Pulumi) and PascalCase (AWS JSON documents)."""
    cur = data
    for name, index in _PATH_TOKEN.findall(path):
        if opaque(cur):
            return cur
        if index:
            if not isinstance(cur, list) or int(index) >= len(cur):
                return default
            cur = cur[int(index)]
        else:
            if not isinstance(cur, dict):
                return default
            if name in cur:
                cur = cur[name]
            else:
                alt = name[:1].swapcase() + name[1:]
                if alt in cur:
                    cur = cur[alt]
                else:
                    return default
        if cur is None:
            return default
    return cur


def as_bool(v: Any) -> Any:
    """True / False / None (absent or unparseable) / UNKNOWN / SECRET. Launch templates carry
    booleans as strings ("true"), some exports as 0/1."""
    if opaque(v) or v is None or isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return bool(v)
    if isinstance(v, str):
        s = v.strip().lower()
        if s in ("true", "yes", "1", "on", "enabled"):
            return True
        if s in ("false", "no", "0", "off", "disabled", ""):
            return False
    return None


def as_num(v: Any) -> Any:
    """float / None / UNKNOWN / SECRET; numbers arrive as floats (8000.0) or strings ("8000")."""
    if opaque(v) or v is None:
        return v
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return None
    return None


def as_list(v: Any) -> list[Any]:
    """A list for iteration: None -> [], a scalar -> [scalar]; UNKNOWN stays inside as an element."""
    if v is None:
        return []
    if isinstance(v, list):
        return v
    return [v]


def as_json(v: Any) -> Any:
    """Decode a JSON document held as a string (ECS containerDefinitions, IAM policies, WAF ruleJson)."""
    if isinstance(v, str):
        try:
            return normalize(json.loads(v))
        except (json.JSONDecodeError, ValueError):
            return None
    return v


def tags_of(props: JSON) -> dict[str, Any]:
    """Tags of an AWS resource in any of its shapes (map, [{key, value}], tagSpecifications[].tags),
    and Kubernetes labels and annotations, merged."""
    out: dict[str, Any] = {}

    def add(t: Any) -> None:
        if isinstance(t, dict):
            for k, v in t.items():
                if isinstance(k, str):
                    out.setdefault(k, v)
        elif isinstance(t, list):
            for item in t:
                if isinstance(item, dict):
                    k = get(item, "key")
                    if isinstance(k, str):
                        out.setdefault(k, get(item, "value"))

    if not isinstance(props, dict):
        return out
    add(props.get("tags"))
    add(props.get("tagsAll"))
    for spec in as_list(props.get("tagSpecifications")):
        if isinstance(spec, dict):
            add(spec.get("tags"))
    for where in ("metadata", "spec.template.metadata"):
        meta = get(props, where)
        if isinstance(meta, dict):
            add(meta.get("labels"))
            add(meta.get("annotations"))
    return out


# ----------------------------------------------------------------------------- types

TYPE_ALIASES = {
    # pulumi-aws kept these old tokens as aliases; programs and old exports still carry them
    "aws:alb/loadBalancer:LoadBalancer": "aws:lb/loadBalancer:LoadBalancer",
    "aws:alb/listener:Listener": "aws:lb/listener:Listener",
    "aws:alb/listenerRule:ListenerRule": "aws:lb/listenerRule:ListenerRule",
    "aws:alb/targetGroup:TargetGroup": "aws:lb/targetGroup:TargetGroup",
    "aws:alb/targetGroupAttachment:TargetGroupAttachment": "aws:lb/targetGroupAttachment:TargetGroupAttachment",
    "aws:applicationloadbalancing/loadBalancer:LoadBalancer": "aws:lb/loadBalancer:LoadBalancer",
    "aws:applicationloadbalancing/listener:Listener": "aws:lb/listener:Listener",
    "aws:applicationloadbalancing/targetGroup:TargetGroup": "aws:lb/targetGroup:TargetGroup",
    "aws:elasticloadbalancingv2/loadBalancer:LoadBalancer": "aws:lb/loadBalancer:LoadBalancer",
    "aws:elasticloadbalancingv2/listener:Listener": "aws:lb/listener:Listener",
    "aws:elasticloadbalancingv2/targetGroup:TargetGroup": "aws:lb/targetGroup:TargetGroup",
    # pulumi-aws 7 renamed the V2 S3 resources to the plain names; 6.x exports carry both
    "aws:s3/bucketV2:BucketV2": "aws:s3/bucket:Bucket",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2":
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketVersioningV2:BucketVersioningV2": "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketAclV2:BucketAclV2": "aws:s3/bucketAcl:BucketAcl",
    "aws:s3/bucketLoggingV2:BucketLoggingV2": "aws:s3/bucketLogging:BucketLogging",
}

K8S_WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod",
                      "ReplicationController")


def canonical_type(t: str) -> str:
    return TYPE_ALIASES.get(t, t)


def k8s_kind(t: str) -> str | None:
    """'kubernetes:apps/v1:Deployment' -> 'Deployment' (any API version); None for other types."""
    if not t.startswith("kubernetes:"):
        return None
    return t.rsplit(":", 1)[-1]


# ----------------------------------------------------------------------------- resources


@dataclass
class Resource:
    """One resource as every rule sees it, whatever fed it (CLI, stack export, plan recording)."""
    type: str                          # canonical type token (aliases resolved)
    name: str                          # logical name (the URN's last segment)
    props: JSON                        # normalised inputs (exports: outputs overlaid by inputs)
    urn: str | None = None
    id: str | None = None           # provider id, when known
    parent: str | None = None       # parent's URN (or name for recordings)
    protect: bool | None = None     # None: the source does not say
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)   # prop -> URNs
    dependencies: list[str] = field(default_factory=list)                         # URNs
    original_type: str | None = None
    extra_ids: tuple[str, ...] = ()    # more strings other resources may use to refer to this one

    def __post_init__(self) -> None:
        if self.original_type is None:
            self.original_type = self.type
        self.type = canonical_type(self.type)

    def get(self, path: str, default: Any = None) -> Any:
        return get(self.props, path, default)

    @property
    def key(self) -> str:
        return self.urn or f"{self.type}::{self.name}"

    @property
    def label(self) -> str:
        return self.name

    def identifiers(self) -> set[str]:
        """Strings by which another resource's inputs may refer to this one: id, ARN, name."""
        ids = {x for x in (self.id, self.urn, *self.extra_ids) if isinstance(x, str) and x}
        for k in ("id", "arn", "name", "bucket", "arnSuffix", "keyId", "allocationId"):
            v = self.props.get(k)
            if isinstance(v, str) and v:
                ids.add(v)
        return ids

    def tags(self) -> dict[str, Any]:
        return tags_of(self.props)


def refers_to(value: Any, target: Resource) -> bool:
    """Whether an input value (an id, ARN, name or ARN suffix) designates `target`."""
    if not isinstance(value, str) or not value:
        return False
    ids = target.identifiers()
    if value in ids:
        return True
    arn = target.props.get("arn")
    if isinstance(arn, str) and arn and len(value) > 8 and (arn.endswith("/" + value) or arn.endswith(":" + value)
                                                            or arn.endswith(value) and "/" in value):
        return True      # CloudWatch dimensions carry ARN suffixes: "app/name/hash", "targetgroup/name/hash"
    if not isinstance(arn, str) and value.startswith("arn:") and (value.endswith(":" + target.name) or
                                                                  value.endswith("/" + target.name)):
        return True      # a recording: no outputs, the harness's ARNs end with the resource name
    return False


class Stack:
    """The whole set of resources, with lookups by type and by reference."""

    def __init__(self, resources: Iterable[Resource]):
        self.resources = list(resources)
        self._by_type: dict[str, list[Resource]] = {}
        self._by_urn: dict[str, Resource] = {}
        self._topology: object = None     # policies.topology.Topology, built once by topology() and shared
        for r in self.resources:
            self._by_type.setdefault(r.type, []).append(r)
            if r.urn:
                self._by_urn[r.urn] = r

    def of_type(self, *types: str) -> list[Resource]:
        out: list[Resource] = []
        for t in types:
            out.extend(self._by_type.get(t, []))
        return out

    def where(self, pred: Callable[[Resource], bool]) -> list[Resource]:
        return [r for r in self.resources if pred(r)]

    def by_urn(self, urn: str) -> Resource | None:
        return self._by_urn.get(urn)

    def referenced(self, source: Resource, prop: str, value: Any, candidates: Iterable[Resource]) -> list[Resource]:
        """Candidates that `source.<prop>` (holding `value`) designates: by the engine's property
        dependencies where the source has them, else by matching ids, ARNs and names."""
        cands = list(candidates)
        found: list[Resource] = []
        top = prop.split(".")[0].split("[")[0]
        deps = source.property_dependencies.get(top)
        values = [v for v in _flatten(value) if isinstance(v, str)]
        for c in cands:
            if values and any(refers_to(v, c) for v in values):
                found.append(c)
            elif deps and c.urn in deps and (not values or any(opaque(v) for v in _flatten(value))
                                             or len(cands) == 1):
                found.append(c)
        if not found and deps:
            # unknown during preview: the engine still knows which resources feed the property
            dep_set = set(deps)
            found = [c for c in cands if c.urn in dep_set and any(opaque(v) for v in _flatten(value))]
        return found


def _flatten(v: Any) -> Iterator[Any]:
    if isinstance(v, list):
        for x in v:
            yield from _flatten(x)
    elif isinstance(v, dict):
        for x in v.values():
            yield from _flatten(x)
    else:
        yield v


# ----------------------------------------------------------------------------- rules

ENVIRONMENTS = ("dev", "staging", "prod")
LEVELS = ("advisory", "mandatory", "disabled")
SEVERITIES = ("low", "medium", "high", "critical")
DEFAULT_ENVIRONMENT = "prod"     # no config: judge as prod


@dataclass(frozen=True)
class Finding:
    """What a rule says about one resource. `undetermined`: the rule needs a value that is unknown
    (preview) or unreadable (secret) to decide; it is reported as a note, never as a violation."""
    message: str
    resource: Resource | None = None
    undetermined: bool = False
    advisory: bool = False      # reported at advisory level whatever the rule's level (e.g. "nothing configured")


def violation(message: str, resource: Resource | None = None) -> Finding:
    return Finding(message, resource)


def advisory(message: str, resource: Resource | None = None) -> Finding:
    """A finding that never blocks: the rule cannot judge until something is configured, and says so once."""
    return Finding(message, resource, advisory=True)


def undetermined(message: str, resource: Resource | None = None) -> Finding:
    return Finding(message, resource, undetermined=True)


# A rule's check: resource rules take a Resource, stack rules the Stack; generators of findings mostly.
ResourceCheck: TypeAlias = Callable[[Resource, "Context"], Iterable[Finding]]
StackCheck: TypeAlias = Callable[[Stack, "Context"], Iterable[Finding]]
Check: TypeAlias = ResourceCheck | StackCheck


@dataclass
class Context:
    environment: str
    config: JSON

    @property
    def prod(self) -> bool:
        return self.environment == "prod"


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    must: str                 # the guide's MUST (or the hardening item) the rule enforces
    guide: str                # section of the guide it cites
    severity: str
    levels: dict[str, str]    # environment -> advisory | mandatory | disabled
    remediation: str
    check: Check              # resource rule: (Resource, Context) -> Iterable[Finding]; stack: (Stack, Context)
    kind: str = "resource"    # "resource" | "stack"
    types: tuple[str, ...] = ()   # resource rules: canonical types it reads (empty: any, it filters itself)
    config: dict[str, JSON] = field(default_factory=dict)     # JSON-schema properties (besides `environment`)
    rationale: str = ""       # why the dev level is what it is

    def __post_init__(self) -> None:
        assert self.severity in SEVERITIES, self.name
        assert set(self.levels) == set(ENVIRONMENTS) and set(self.levels.values()) <= set(LEVELS), self.name
        assert self.kind in ("resource", "stack"), self.name
        assert "environment" not in self.config and "enforcementLevel" not in self.config, self.name

    def applies_to(self, r: Resource) -> bool:
        if not self.types:
            return True
        return r.type in self.types or (k8s_kind(r.type) is not None and
                                        any(t.startswith("k8s:") and k8s_kind(r.type) == t[4:] for t in self.types))

    def config_schema(self) -> dict[str, JSON]:
        props: dict[str, JSON] = {
            "environment": {"type": "string", "enum": list(ENVIRONMENTS), "default": DEFAULT_ENVIRONMENT,
                            "description": "the stack's environment; decides this rule's level and scope"}}
        props.update(self.config)
        return props

    def defaults(self) -> JSON:
        return {k: v["default"] for k, v in self.config_schema().items() if "default" in v}

    def context(self, policy_config: Mapping[str, Any] | None, environment: str | None = None) -> Context:
        cfg = self.defaults()
        if environment:
            cfg["environment"] = environment
        for k, v in (policy_config or {}).items():
            if k != "enforcementLevel":
                cfg[k] = v
        env: str = cfg["environment"] if cfg.get("environment") in ENVIRONMENTS else DEFAULT_ENVIRONMENT
        cfg["environment"] = env
        return Context(env, cfg)

    def run(self, subject: Any, ctx: Context) -> list[Finding]:
        if self.levels[ctx.environment] == "disabled":
            return []
        try:
            if self.kind == "resource":
                if not self.applies_to(subject):
                    return []
                return [f if f.resource is not None else Finding(f.message, subject, f.undetermined, f.advisory)
                        for f in self.check(subject, ctx) or ()]
            return list(self.check(subject, ctx) or ())
        except Exception as exc:       # noqa: BLE001 - a rule's bug must not take the whole analysis down
            where = subject if self.kind == "resource" else None
            return [Finding(f"the rule could not evaluate this input ({type(exc).__name__}: {exc})", where, True)]


def rule(**kw: Any) -> Callable[[Check], Rule]:
    """Decorator: `@rule(name=..., ...)` over the check function makes it a Rule."""
    def wrap(fn: Check) -> Rule:
        return Rule(check=fn, **kw)
    return wrap


def levels(dev: str, prod: str = "mandatory", staging: str | None = None) -> dict[str, str]:
    return {"dev": dev, "staging": staging or prod, "prod": prod}


# ----------------------------------------------------------------------------- matching helpers


def glob_match(value: str, patterns: Iterable[str]) -> bool:
    v = value.lower()
    return any(fnmatch.fnmatchcase(v, p.lower()) for p in patterns if isinstance(p, str))

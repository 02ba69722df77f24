"""Which model is served, and whether it is pinned, verified and approved: allow-list, revision,
checksum digest, provenance. Stack rules: a model's identity and tags may sit on the launch template,
its Auto Scaling group, the task definition, the ECS service or the pod's labels."""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, TypeAlias

from ..core import (
    UNKNOWN,
    Context,
    Finding,
    Resource,
    Stack,
    advisory,
    glob_match,
    levels,
    opaque,
    rule,
    undetermined,
    violation,
)
from ..facts import Model, facts
from ..topology import Group, topology
from ..workloads import Process, Workload

COMMIT = re.compile(r"^[0-9a-f]{40}$")
DIGEST = re.compile(r"^(sha256:)?[0-9a-f]{64}$", re.I)
HEX40_IN_PATH = re.compile(r"(^|/)[0-9a-f]{40}(/|$)")
VERIFY_CMD = re.compile(r"\bsha256sum\b[^\n;&|]*\s(-c|--check)\b|\bshasum\b[^\n;&|]*-a\s*256[^\n;&|]*\s(-c|--check)\b|"
                        r"\bcosign\s+verify", re.I)


def registry() -> dict[str, Model]:
    """The project's model registry as vendored in policies/data/facts.json (id -> facts.Model)."""
    return facts().models


_QUANT_SUFFIX = re.compile(r"-(awq|gptq|fp8|int4|int8|w4a16|w8a8|gguf)(-[\w.]+)?$", re.I)


def _canonical(n: str) -> str:
    """Names the registry knows a model by: Hub renames (meta-llama/Meta-Llama-3.1-* is now
    meta-llama/Llama-3.1-*) and quantised derivatives (<org>/<name>-AWQ) resolve to the base model."""
    n = n.strip().lower().removeprefix("hf.co/").removeprefix("huggingface.co/").split("@", 1)[0]
    n = n.replace("meta-llama/meta-llama-3.1-", "meta-llama/llama-3.1-")
    return n


def registry_model(name: Any) -> Model | None:
    """The registry entry for a Hugging Face id (also renamed or quantised derivatives) or an Ollama tag
    (with or without a quantisation suffix, or the family:size short form such as llama3.1:8b)."""
    if not isinstance(name, str) or not name:
        return None
    n = _canonical(name)
    models = registry()
    for mid, info in models.items():
        if mid.lower() == n:
            return info
    base = re.sub(r"^meta-llama-", "llama-", re.sub(r"-hf$", "", _QUANT_SUFFIX.sub("", n.split("/", 1)[-1]))) \
        if "/" in n else None
    if base:
        for mid, info in models.items():
            if re.sub(r"-hf$", "", mid.lower().split("/", 1)[1]) == base:
                return info
    for info in models.values():
        tag = (info.ollama_tag or "").lower()
        if tag and (n == tag or n.startswith(tag + "-") or tag.startswith(n + "-") or
                    (":" not in n and tag.split(":")[0] == n)):
            return info
    return None


def allowed(model: str, patterns: list[str]) -> bool:
    """On the configured allow-list, by the name served or the name the Hub renamed it to."""
    return glob_match(model, patterns) or glob_match(_canonical(model), patterns)


def _is_repo_id(s: Any) -> bool:
    return isinstance(s, str) and not s.startswith(("/", ".", "~", "s3://", "$")) and bool(
        re.fullmatch(r"[\w.-]+/[\w.-]+(@\S+)?", s) or re.fullmatch(r"[\w.-]+(:[\w.-]+)?(@sha256:[0-9a-f]{64})?", s)
        and ":" in s or re.fullmatch(r"hf\.co/\S+", s))


def _tag_values(tags: dict[str, Any], pattern: str) -> list[Any]:
    rx = re.compile(pattern, re.I)
    return [v for k, v in tags.items() if isinstance(k, str) and rx.search(k)]


def identity(process: Process | None, tags: dict[str, Any]) -> Any:
    """What the process serves: a repository id or Ollama tag from its command line, else a tag/label
    that names the model (…:model, model, model-id). None if nothing says; UNKNOWN if it is unknown."""
    m = process.model() if process is not None else None
    if opaque(m):
        return m
    if _is_repo_id(m):
        return m
    for v in _tag_values(tags, r"(^|[:/._-])(model|model[-_]?id|model[-_]?name)$"):
        if isinstance(v, str) and v:
            return v
        if opaque(v):
            return UNKNOWN
    return m if isinstance(m, str) and m and not m.startswith(("/", ".", "$", "s3://")) else None


# (group, workload resource, process or None, tags) of one model deployment
Deployment: TypeAlias = tuple[Group, Resource, Process | None, dict[str, Any]]


def _deployments(stack: Stack) -> list[Deployment]:
    """(group, workload resource, process or None, tags) for every model deployment in the stack."""
    out: list[Deployment] = []
    for g in topology(stack).inference_groups():
        w = g.workload
        tags = dict(g.tags)
        if w is not None and w.processes:
            for p in w.processes:
                env_tags = {k: v for k, v in p.env.items() if isinstance(k, str)}
                out.append((g, w.resource, p, {**env_tags, **tags}))
        elif any(re.search(r"model", str(k), re.I) for k in tags):
            out.append((g, g.resource, None, tags))      # a GPU group whose image starts the server: tags only
    seen: set[tuple[str, str | None]] = set()
    uniq: list[Deployment] = []
    for d in out:
        key = (d[1].key, d[2].label if d[2] is not None else None)
        if key not in seen:
            seen.add(key)
            uniq.append(d)
    return uniq


def _what(p: Process | None, res: Resource) -> str:
    return p.label if p is not None else f"the model deployment on {res.name}"


@rule(
    name="model-allow-list",
    description="Every model served is on the allow-list (policy config `allowedModels`, glob patterns over "
                "Hugging Face ids and Ollama tags) and can be identified. With no allow-list configured the rule "
                "says so once (advisory) instead of judging models against a list nobody chose.",
    must="Teams MUST select appropriate models; DON'T allow arbitrary model access (model provenance)",
    guide="Model Selection Guide; Security Considerations > Model Security; Do and Don't Examples",
    severity="high",
    levels=levels(dev="advisory"),
    rationale="dev: advisory, engineers evaluate new models in dev before the security review",
    remediation="Configure allowedModels in the policy pack config with the reviewed models (e.g. "
                "[\"meta-llama/Llama-3.1-8B-Instruct\", \"qwen2.5-coder:7b*\"]); serve only those; when serving "
                "from a local path, tag the deployment with the repository id (llm-platform:model).",
    kind="stack",
    config={"allowedModels": {"type": "array", "items": {"type": "string"},
                              "description": "model ids / Ollama tags (glob patterns) that may be served; "
                                             "unset: the rule reports once that no allow-list is configured"}},
)
def model_allow_list(stack: Stack, ctx: Context) -> Iterator[Finding]:
    patterns = ctx.config.get("allowedModels")
    deployments = _deployments(stack)
    if not patterns:
        if deployments:
            names = sorted({str(identity(p, tags)) for _, _, p, tags in deployments
                            if isinstance(identity(p, tags), str)})
            yield advisory("no model allow-list is configured (policy config allowedModels): the models served "
                           f"({', '.join(names) or 'unidentified'}) are not judged against one")
        return
    for _g, res, p, tags in deployments:
        m = identity(p, tags)
        if opaque(m):
            yield undetermined(f"{_what(p, res)}: the model is not known yet", res)
        elif not m:
            yield violation(f"{_what(p, res)} serves a model that cannot be identified (a local path and no model "
                            "tag): the allow-list cannot be checked", res)
        elif not allowed(m, patterns):
            yield violation(f"{_what(p, res)} serves {m!r}, which is not on the model allow-list", res)


def _revision(p: Process | None, tags: dict[str, Any]) -> tuple[Any, str | None]:
    """(value, where) of the pinned revision, or (None, None)."""
    if p is not None and p.runtime == "ollama":
        # `ollama pull name:tag` fetches whatever the registry's tag points at today: only a digest pins it,
        # whatever a tag on the resource claims
        m = p.model()
        if isinstance(m, str) and "@sha256:" in m:
            return m.split("@", 1)[1], "Ollama digest"
        if isinstance(m, str):
            return (m.rsplit(":", 1)[1] if ":" in m.rsplit("/", 1)[-1] else "latest"), f"Ollama tag of {m}"
    if p is not None:
        for f in ("--revision",):
            v = p.flag(f)
            if v is not None and v is not True:
                return v, f
        v = p.envv("REVISION", "MODEL_REVISION", "HF_REVISION")
        if v is not None:
            return v, "REVISION"
        m = p.model()
        if isinstance(m, str):
            if "@sha256:" in m:
                return m.split("@", 1)[1], "image-style digest"
            if hit := HEX40_IN_PATH.search(m):
                return hit.group(0).strip("/"), "model path"
    for v in _tag_values(tags, r"revision|commit"):
        return v, "tag"
    return None, None


def _pinned(v: Any) -> bool:
    return isinstance(v, str) and bool(COMMIT.match(v.strip()) or re.fullmatch(r"sha256:[0-9a-f]{64}", v.strip()))


@rule(
    name="model-revision-pinned",
    description="In prod every model deployment pins its revision: a 40-hex commit or sha256 digest (vLLM/TGI "
                "--revision, an Ollama @sha256 reference, a commit in the model path, or a revision tag); "
                "branch names such as main or latest are refused.",
    must="Organizations MUST verify model integrity (pinned, reviewed weights)",
    guide="Security Considerations > Model Security; Do and Don't Examples (DO: document and version)",
    severity="high",
    levels=levels(dev="advisory", staging="advisory"),
    rationale="dev: advisory, experiments follow main; staging: advisory, it rehearses prod",
    remediation="Pass --revision <commit> (or serve models/<name>/<commit>/ from the model store) and tag the "
                "deployment llm-platform:revision=<commit>.",
    kind="stack",
)
def model_revision(stack: Stack, ctx: Context) -> Iterator[Finding]:
    for _g, res, p, tags in _deployments(stack):
        v, where = _revision(p, tags)
        if opaque(v):
            yield undetermined(f"{_what(p, res)}: the revision is not known yet", res)
        elif v is None:
            yield violation(f"{_what(p, res)} pins no revision: the weights served can change under the deployment",
                            res)
        elif not _pinned(v):
            yield violation(f"{_what(p, res)} uses revision {v!r} ({where}), not a commit or digest", res)


def _texts(w: Workload | None) -> list[str]:
    out = [w.text] if w is not None and isinstance(w.text, str) else []
    if w is not None:
        out += [" ".join(map(str, c.argv)) for c in w.containers]
    return out


@rule(
    name="model-checksum-verified",
    description="In prod every model deployment carries the SHA-256 digest of its weights' manifest (a checksum "
                "tag, label or env var) or verifies checksums before the server starts (sha256sum -c).",
    must="Organizations MUST verify model integrity (sha256sum -c checksums.txt)",
    guide="Security Considerations > Model Security",
    severity="high",
    levels=levels(dev="advisory", staging="advisory"),
    rationale="dev: advisory, models pulled for evaluation are not yet staged with manifests",
    remediation="Stage the model with a SHA256SUMS manifest, tag llm-platform:checksum=<manifest sha256> and run "
                "`sha256sum -c SHA256SUMS` (failing closed) before starting the server.",
    kind="stack",
)
def model_checksum(stack: Stack, ctx: Context) -> Iterator[Finding]:
    for g, res, p, tags in _deployments(stack):
        digests = _tag_values(tags, r"checksum|sha256|digest")
        if any(opaque(d) for d in digests):
            yield undetermined(f"{_what(p, res)}: the checksum is not known yet", res)
            continue
        bad = [d for d in digests if isinstance(d, str) and d and not DIGEST.match(d.strip())]
        good = [d for d in digests if isinstance(d, str) and DIGEST.match(d.strip())]
        verifies = any(VERIFY_CMD.search(t) for t in _texts(g.workload))
        if good or verifies:
            continue
        if g.workload is not None and g.workload.opaque:
            yield undetermined(f"{_what(p, res)}: the start-up commands are not known yet", res)
        elif bad:
            yield violation(f"{_what(p, res)} carries checksum {bad[0]!r}, which is not a SHA-256 digest", res)
        else:
            yield violation(f"{_what(p, res)} has no SHA-256 digest of its weights and verifies none before "
                            "starting: tampered weights would be served", res)


@rule(
    name="model-provenance-approved",
    description="In prod every model deployment records its provenance — a source (provenance/source tag or "
                "label) and an approval (approved-by, or review-status) — and its review status, if recorded, "
                "is 'approved'.",
    must="Model provenance tracking (source, license, approved_by, review_status: approved)",
    guide="Security Considerations > Model Security (Model Provenance Tracking)",
    severity="high",
    levels=levels(dev="advisory", staging="advisory"),
    rationale="dev: advisory, models are reviewed before they reach prod",
    remediation="Tag the deployment llm-platform:provenance-source, -license, -approved-by and -review-status "
                "(approved) from the stack's provenance block.",
    kind="stack",
)
def model_provenance(stack: Stack, ctx: Context) -> Iterator[Finding]:
    for _g, res, p, tags in _deployments(stack):
        sources = [v for v in _tag_values(tags, r"provenance.*(source|origin|url)|(^|[:/._-])(model[-_]?)?source$|"
                                                r"provenance$") if v not in (None, "")]
        approvers = [v for v in _tag_values(tags, r"approved[-_ ]?by|approver") if v not in (None, "")]
        statuses = [v for v in _tag_values(tags, r"review[-_ ]?status|approval[-_ ]?status|(^|[:/._-])approval$")
                    if v not in (None, "")]
        if any(opaque(v) for v in sources + approvers + statuses):
            yield undetermined(f"{_what(p, res)}: provenance tags are not known yet", res)
            continue
        problems = []
        if not sources:
            problems.append("no provenance source")
        bad = [s for s in statuses if str(s).strip().lower() != "approved"]
        if bad:
            problems.append(f"review status {bad[0]!r} (must be 'approved')")
        elif not approvers and not statuses:
            problems.append("no approval (approved-by or review-status)")
        if problems:
            yield violation(f"{_what(p, res)}: {'; '.join(problems)}", res)


RULES = [model_allow_list, model_revision, model_checksum, model_provenance]

"""No secrets in user data, container environments, command lines or plain SSM parameters."""
from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from ..core import SECRET, UNKNOWN, Context, Finding, Resource, levels, rule, undetermined, violation
from ..workloads import WORKLOAD_TYPES, workload
from .runtime import K8S_WORKLOADS

SSM_PARAMETER = "aws:ssm/parameter:Parameter"
LAMBDA = "aws:lambda/function:Function"

PATTERNS = [
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
    ("an AWS access key id", re.compile(r"\b(AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b")),
    ("an AWS secret access key", re.compile(r"(?i)aws_secret_access_key\s*[=:]\s*[\"']?[A-Za-z0-9/+=]{40}\b")),
    ("a private key", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
    ("a GitHub token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b")),
    ("an OpenAI-style API key", re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{24,}\b")),
    ("a Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b")),
    ("an API key literal", re.compile(
        r"(?i)(?<![\w$])(api[_-]?key|apikey|access[_-]?token|auth[_-]?token|hf[_-]?token|hugging_?face_?hub_?token|"
        r"secret[_-]?key|client[_-]?secret|password|passwd)[\"']?\s*[:=]\s*[\"']?(?P<v>[^\s\"'`;,)}\]]{8,})")),
    ("an API key flag", re.compile(r"(?i)--(api-key|hf-token|token|password)[= ]+[\"']?(?P<v>[^\s\"'`;$]{8,})")),
]
PLACEHOLDERS = re.compile(r"^(not-needed|none|null|nil|true|false|dummy|placeholder|example|redacted|x{4,}|\*{4,}|"
                          r"changeit-in-secrets-manager|your[-_]?\w+|<[^>]*>|\.\.\.+)$", re.I)
SECRET_NAME = re.compile(r"(^|_)(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|APIKEY|ACCESS_?KEY|PRIVATE_?KEY|"
                         r"CREDENTIALS?|HF_TOKEN|HUGGING_FACE_HUB_TOKEN)($|_)", re.I)
NOT_A_VALUE_NAME = re.compile(r"_(FILE|PATH|ARN|ID|NAME|URL|URI|DIR|REGION|HEADER|TTL|SECONDS|LENGTH|ENABLED)$", re.I)


def _is_reference(v: str) -> bool:
    s = v.strip().strip("'\"")
    return (not s or s.startswith(("$", "{{", "arn:", "/", "<", "%", "@", "ssm:", "secretsmanager:", "vault:"))
            or bool(PLACEHOLDERS.match(s)))


def scan_text(text: str) -> list[str]:
    """What kinds of secret literal a text contains."""
    found = []
    for what, rx in PATTERNS:
        for m in rx.finditer(text):
            v = m.groupdict().get("v")
            if v is not None and (_is_reference(v) or (what == "an API key flag" and v.startswith("$"))):
                continue
            found.append(what)
            break
    return found


def _env_finding(where: str, name: str, value: Any) -> Finding | None:
    if value is SECRET:
        return violation(f"{where}: {name} carries a secret value in plaintext (it ends up readable in the "
                         "task/pod definition); reference it (secrets/valueFrom) instead")
    if not isinstance(value, str):
        return None
    kinds = scan_text(f"{name}={value}")
    if kinds:
        return violation(f"{where}: {name} holds {kinds[0]}; read it from Secrets Manager at start-up instead")
    if SECRET_NAME.search(name) and not NOT_A_VALUE_NAME.search(name) and len(value.strip()) >= 8 \
            and not _is_reference(value) and not re.fullmatch(r"[\d.]+|true|false", value.strip(), re.I):
        return violation(f"{where}: {name} is set to a literal secret; read it from Secrets Manager at start-up "
                         "instead")
    return None


@rule(
    name="no-secret-literals",
    description="No secret-looking literal (Hugging Face tokens, AWS keys, private keys, GitHub/OpenAI/Slack "
                "tokens, api_key= / --api-key values, literal values of *_TOKEN / *_SECRET / *_PASSWORD env "
                "vars) in EC2 user data, container environments or command lines, Lambda environments or plain "
                "(non-SecureString) SSM parameters; no Pulumi secret interpolated into them.",
    must="Teams MUST use proper secrets management; never commit secrets",
    guide="Security Considerations > Secrets Management",
    severity="critical",
    levels=levels(dev="mandatory"),
    remediation="Store the value in Secrets Manager (KMS CMK) and read it at boot through the instance/task role "
                "(`aws secretsmanager get-secret-value`), or reference it: ECS secrets[].valueFrom, Kubernetes "
                "env[].valueFrom.secretKeyRef; SSM parameters holding secrets are SecureString.",
    types=WORKLOAD_TYPES + K8S_WORKLOADS + (SSM_PARAMETER, LAMBDA),
)
def no_secret_literals(r: Resource, ctx: Context) -> Iterator[Finding]:
    if r.type == SSM_PARAMETER:
        ptype = r.get("type")
        if isinstance(ptype, str) and ptype == "SecureString":
            return
        value = r.get("value") if r.get("value") is not None else r.get("insecureValue")
        name = str(r.get("name") or r.name)
        if value is SECRET:
            yield undetermined("the parameter's value is a secret the analysis cannot read")
        elif isinstance(value, str):
            kinds = scan_text(value)
            if kinds or (SECRET_NAME.search(name.replace("/", "_").replace("-", "_")) and not _is_reference(value)
                         and len(value) >= 8):
                yield violation(f"the {ptype or 'String'} parameter holds {kinds[0] if kinds else 'a secret'} in "
                                "plaintext: use SecureString")
        return
    if r.type == LAMBDA:
        env = r.get("environment.variables")
        if isinstance(env, dict):
            for k, v in env.items():
                f = _env_finding("environment", k, v)
                if f:
                    yield f
        return
    w = workload(r)
    if w is None:
        return
    if w.text is SECRET:
        yield violation("the start-up definition is itself a secret value: a secret was interpolated into it, and "
                        "instances, tasks and pods expose it in plaintext; read secrets at boot instead")
        return
    if w.text is UNKNOWN:
        yield undetermined("the start-up definition is not known yet")
        return
    seen = set()
    if isinstance(w.text, str):
        kinds = scan_text(w.text)
        if kinds:
            yield violation(f"the user data contains {' and '.join(kinds)}: anyone who can read the instance's "
                            "metadata or the launch template reads it")
    for where, name, value in w.env_values:
        if isinstance(w.text, str) and isinstance(value, str) and scan_text(f"{name}={value}"):
            continue        # already reported by the scan of the whole user data
        f = _env_finding(where, name, value)
        if f and f.message not in seen:
            seen.add(f.message)
            yield f
    if not isinstance(w.text, str):
        for where, text in w.args_texts:
            kinds = scan_text(text)
            if kinds:
                yield violation(f"{where}: the command line contains {' and '.join(kinds)}")


RULES = [no_secret_literals]

"""Encryption keys and secrets: KMS rotation, Secrets Manager on a customer-managed key, rotation."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..core import (
    UNKNOWN,
    Context,
    Finding,
    Resource,
    Stack,
    as_bool,
    get,
    levels,
    opaque,
    rule,
    undetermined,
    violation,
)

KMS_KEY = "aws:kms/key:Key"
SECRET = "aws:secretsmanager/secret:Secret"
ROTATION = "aws:secretsmanager/secretRotation:SecretRotation"


def is_aws_managed_key(v: Any) -> bool:
    return isinstance(v, str) and (v.startswith("alias/aws/") or ":alias/aws/" in v)


@rule(
    name="kms-key-rotation",
    description="Customer-managed symmetric KMS keys rotate their key material yearly (enableKeyRotation).",
    must="Encryption at rest (AES-256, keys managed and rotated)",
    guide="Security Considerations > Data Privacy and Compliance (logging_configuration.encryption)",
    severity="medium",
    levels=levels(dev="advisory"),
    rationale="dev: advisory, dev keys protect no production data",
    remediation="Set enableKeyRotation: true (and rotationPeriodInDays if a shorter period is required).",
    types=(KMS_KEY,),
)
def kms_rotation(r: Resource, ctx: Context) -> Iterator[Finding]:
    spec = r.get("customerMasterKeySpec") or r.get("keySpec") or "SYMMETRIC_DEFAULT"
    usage = r.get("keyUsage") or "ENCRYPT_DECRYPT"
    if opaque(spec) or opaque(usage):
        yield undetermined("the key spec is not known yet")
        return
    if spec != "SYMMETRIC_DEFAULT" or usage != "ENCRYPT_DECRYPT":
        return      # asymmetric and HMAC keys cannot rotate automatically
    if str(r.get("customKeyStoreId") or "") or str(r.get("xksKeyId") or ""):
        return
    v = as_bool(r.get("enableKeyRotation"))
    if opaque(v):
        yield undetermined("enableKeyRotation is not known yet")
    elif v is not True:
        yield violation("enableKeyRotation is not true: the key material never rotates")


@rule(
    name="secrets-on-cmk",
    description="Secrets Manager secrets (API keys, Hugging Face token) are encrypted with a customer-managed "
                "KMS key, not the account's default aws/secretsmanager key.",
    must="Use proper secrets management; encryption at rest",
    guide="Security Considerations > Secrets Management",
    severity="medium",
    levels=levels(dev="advisory"),
    rationale="dev: advisory, the default key still encrypts; the CMK adds key policy and audit control",
    remediation="Create an aws.kms.Key with rotation and pass kmsKeyId=key.arn to aws.secretsmanager.Secret; "
                "grant kms:Decrypt to the instance role only.",
    types=(SECRET,),
)
def secrets_cmk(r: Resource, ctx: Context) -> Iterator[Finding]:
    k = r.get("kmsKeyId")
    if k is UNKNOWN:
        return          # a key created in the same update: a CMK
    if k is None or k == "" or is_aws_managed_key(k):
        yield violation("the secret is encrypted with the AWS-managed key aws/secretsmanager: set kmsKeyId to a "
                        "customer-managed key so its key policy decides who can decrypt")


@rule(
    name="secrets-rotation",
    description="Secrets Manager secrets have a rotation schedule (aws.secretsmanager.SecretRotation). "
                "Advisory everywhere: generated API keys rotate by redeploying, and a Hugging Face token "
                "cannot be rotated by a Lambda.",
    must="Secrets management (rotation where possible)",
    guide="Security Considerations > Secrets Management",
    severity="low",
    levels=levels(dev="advisory", prod="advisory"),
    rationale="advisory in every environment: rotation is not possible for every secret (third-party tokens)",
    remediation="Add aws.secretsmanager.SecretRotation(secret_id=secret.id, rotation_lambda_arn=..., "
                "rotation_rules={'automatically_after_days': 90}) where the secret's issuer allows it.",
    kind="stack",
)
def secrets_rotation(stack: Stack, ctx: Context) -> Iterator[Finding]:
    rotations = stack.of_type(ROTATION)
    for s in stack.of_type(SECRET):
        if get(s.props, "rotationRules") is not None:
            continue
        if any(stack.referenced(rot, "secretId", rot.get("secretId"), [s]) for rot in rotations):
            continue
        if any(rot.get("secretId") is UNKNOWN for rot in rotations):
            yield undetermined("a rotation's secretId is not known yet", s)
            continue
        yield violation("the secret has no rotation schedule", s)


RULES = [kms_rotation, secrets_cmk, secrets_rotation]

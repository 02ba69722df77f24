"""The model store (S3): never public, encrypted with a KMS key, public access blocked."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..core import (
    JSON,
    UNKNOWN,
    Context,
    Finding,
    Resource,
    Stack,
    as_bool,
    as_json,
    as_list,
    get,
    levels,
    opaque,
    rule,
    undetermined,
    violation,
)

BUCKET = "aws:s3/bucket:Bucket"
BUCKET_ACL = "aws:s3/bucketAcl:BucketAcl"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ACCOUNT_PAB = "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
PUBLIC_ACLS = ("public-read", "public-read-write", "authenticated-read")
PAB_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def _public_statements(policy: Any) -> list[JSON]:
    doc = as_json(policy)
    if not isinstance(doc, dict):
        return []
    out: list[JSON] = []
    for st in as_list(get(doc, "Statement")):
        if not isinstance(st, dict) or str(get(st, "Effect", "")).lower() != "allow":
            continue
        p = get(st, "Principal")
        anyone = p == "*" or (isinstance(p, dict) and "*" in as_list(get(p, "AWS")))
        if anyone and not get(st, "Condition"):
            out.append(st)
    return out


@rule(
    name="s3-bucket-not-public",
    description="No bucket is made public: no public-read / public-read-write / authenticated-read ACL, no "
                "bucket policy granting Principal '*' without a condition, no public access block switched off.",
    must="No direct internet exposure (model weights and manifests are confidential)",
    guide="Security Considerations > Network Security; Model Security",
    severity="critical",
    levels=levels(dev="mandatory"),
    remediation="Remove the public ACL or statement; read the model store through the instance role and the "
                "S3 gateway endpoint; keep all four public-access-block flags true.",
    types=(BUCKET, BUCKET_ACL, BUCKET_POLICY, PAB),
)
def s3_not_public(r: Resource, ctx: Context) -> Iterator[Finding]:
    if r.type in (BUCKET, BUCKET_ACL):
        acl = r.get("acl")
        if isinstance(acl, str) and acl.lower() in PUBLIC_ACLS:
            yield violation(f"acl {acl!r} makes the bucket readable by anyone")
        for g in as_list(r.get("grants")) + as_list(r.get("accessControlPolicy.grants")):
            uri = get(g, "uri") or get(g, "grantee.uri")
            if isinstance(uri, str) and ("AllUsers" in uri or "AuthenticatedUsers" in uri):
                yield violation(f"a grant to {uri.rsplit('/', 1)[-1]} makes the bucket public")
    if r.type in (BUCKET, BUCKET_POLICY):
        pol = r.get("policy")
        if opaque(pol):
            if r.type == BUCKET_POLICY:
                yield undetermined("the bucket policy is not known yet")
        elif pol is not None:
            for st in _public_statements(pol):
                yield violation(f"the bucket policy allows {get(st, 'Action')!r} to Principal '*' with no condition")
    if r.type == PAB:
        for f in PAB_FLAGS:
            v = as_bool(r.get(f))
            if v is False and r.get(f) is not None:
                yield violation(f"{f} is false: the public access block no longer stops public access")


def _bucket_refs(stack: Stack, res: Resource, prop: str, buckets: list[Resource]) -> list[Resource]:
    return stack.referenced(res, prop, res.get(prop), buckets)


@rule(
    name="s3-bucket-kms-encryption",
    description="Buckets (the model store) default to SSE-KMS with a customer-managed key, inline or through "
                "a BucketServerSideEncryptionConfiguration.",
    must="Encryption at rest with customer-managed keys (the model bucket)",
    guide="Security Considerations > Data Privacy and Compliance",
    severity="medium",
    levels=levels(dev="advisory", prod="advisory"),
    rationale="advisory in every environment: S3 encrypts every object (SSE-S3) by default since 2023; the "
              "CMK adds key-policy control over the weights",
    remediation="aws.s3.BucketServerSideEncryptionConfiguration(bucket=b.id, rules=[{apply_server_side_"
                "encryption_by_default: {sse_algorithm: 'aws:kms', kms_master_key_id: key.arn}, "
                "bucket_key_enabled: True}]).",
    kind="stack",
)
def s3_kms(stack: Stack, ctx: Context) -> Iterator[Finding]:
    configs = stack.of_type(SSE)
    lbs = stack.of_type("aws:lb/loadBalancer:LoadBalancer", "aws:elb/loadBalancer:LoadBalancer")
    for b in stack.of_type(BUCKET):
        if any(stack.referenced(lb, "accessLogs", lb.get("accessLogs.bucket"), [b]) for lb in lbs):
            continue        # ELB access logs can only be written to SSE-S3 buckets
        rules = as_list(get(b.props, "serverSideEncryptionConfiguration.rule")) + \
            as_list(get(b.props, "serverSideEncryptionConfiguration.rules"))
        for c in configs:
            if _bucket_refs(stack, c, "bucket", [b]) or (c.get("bucket") is UNKNOWN and len(configs) == 1):
                rules += as_list(c.get("rules")) + as_list(c.get("rule"))
        algos = [get(x, "applyServerSideEncryptionByDefault.sseAlgorithm") for x in rules]
        if any(opaque(a) for a in algos):
            continue
        if not any(isinstance(a, str) and a.startswith("aws:kms") for a in algos):
            yield violation("the bucket has no default SSE-KMS encryption with a customer-managed key", b)


@rule(
    name="s3-public-access-block",
    description="Every bucket has a public access block with all four flags true (or the account has one).",
    must="No direct internet exposure",
    guide="Security Considerations > Network Security",
    severity="medium",
    levels=levels(dev="advisory", prod="advisory"),
    rationale="advisory in every environment: new buckets block public access by default since 2023 and the "
              "account may enforce it; s3-bucket-not-public catches actual exposure",
    remediation="aws.s3.BucketPublicAccessBlock(bucket=b.id, block_public_acls=True, block_public_policy=True, "
                "ignore_public_acls=True, restrict_public_buckets=True).",
    kind="stack",
)
def s3_pab(stack: Stack, ctx: Context) -> Iterator[Finding]:
    if any(all(as_bool(a.get(f)) is True for f in PAB_FLAGS) for a in stack.of_type(ACCOUNT_PAB)):
        return
    blocks = stack.of_type(PAB)
    for b in stack.of_type(BUCKET):
        mine = [p for p in blocks if _bucket_refs(stack, p, "bucket", [b])]
        if not mine and any(p.get("bucket") is UNKNOWN for p in blocks):
            continue
        if not any(all(as_bool(p.get(f)) is True for f in PAB_FLAGS) for p in mine):
            yield violation("the bucket has no public access block with all four flags true", b)


RULES = [s3_not_public, s3_kms, s3_pab]

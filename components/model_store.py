"""ModelStore: the S3 bucket instances load verified weights from.

Layout: models/<name>/<revision>/ holding the model's files and its SHA256SUMS manifest (see the
README, "Staging a model"). The bucket is versioned (an overwritten file can be recovered and
is never silently served: the manifest digest pins content), encrypted with the stack's CMK
(S3 Bucket Keys on, to keep KMS request costs flat), owner-enforced (no ACLs), blocked from any
public access, and its policy refuses plain HTTP and any object read that does not come through
the VPC's S3 gateway endpoint. Which role may read which prefix is granted on the roles.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


def tls_only_statement(bucket_arn: pulumi.Input[str]) -> dict:
    return {"Sid": "DenyPlainHttp", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [bucket_arn, pulumi.Output.concat(bucket_arn, "/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def private_bucket(name: str, *, prefix: str, tags: dict, parent: pulumi.Resource, protect: bool,
                   kms_key_arn: pulumi.Input[str] | None, expire_days: int | None = None) -> aws.s3.Bucket:
    """A bucket with versioning, encryption, owner-enforced objects and every public access blocked."""
    child = pulumi.ResourceOptions(parent=parent)
    bucket = aws.s3.Bucket(name, bucket_prefix=prefix, force_destroy=not protect, tags=tags,
                           opts=pulumi.ResourceOptions(parent=parent, protect=protect))
    aws.s3.BucketOwnershipControls(name, bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
    aws.s3.BucketPublicAccessBlock(name, bucket=bucket.id, block_public_acls=True, block_public_policy=True,
                                   ignore_public_acls=True, restrict_public_buckets=True, opts=child)
    aws.s3.BucketVersioning(name, bucket=bucket.id, versioning_configuration={"status": "Enabled"}, opts=child)
    sse = ({"sse_algorithm": "aws:kms", "kms_master_key_id": kms_key_arn} if kms_key_arn is not None
           else {"sse_algorithm": "AES256"})
    aws.s3.BucketServerSideEncryptionConfiguration(
        name, bucket=bucket.id, rules=[{"apply_server_side_encryption_by_default": sse,
                                        "bucket_key_enabled": kms_key_arn is not None}], opts=child)
    if expire_days:
        aws.s3.BucketLifecycleConfiguration(name, bucket=bucket.id, rules=[{
            "id": "expire", "status": "Enabled", "filter": {},
            "expiration": {"days": expire_days}, "noncurrent_version_expiration": {"noncurrent_days": 7},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 2}}], opts=child)
    return bucket


def model_prefix(name: str, revision: str | None) -> str:
    """Where a deployment's staged files live in the store: models/<name>/<revision>."""
    return f"models/{name}/{revision or 'unpinned'}"


def read_statements(bucket_arn: pulumi.Input[str], name: str, revision: str | None) -> list[dict]:
    """IAM statements that let a role read one model's prefix, and nothing else in the store."""
    prefix = model_prefix(name, revision)
    return [{"Sid": "ReadThisModel", "Effect": "Allow", "Action": ["s3:GetObject"],
             "Resource": pulumi.Output.format("{0}/{1}/*", bucket_arn, prefix)},
            {"Sid": "ListThisModel", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": bucket_arn,
             "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*", prefix]}}}]


@dataclass(frozen=True)
class ModelStoreArgs:
    stack: str
    kms_key_arn: pulumi.Input[str]        # SSE-KMS with S3 Bucket Keys
    s3_endpoint_id: pulumi.Input[str]     # object reads are refused unless they come through this gateway endpoint
    extra_s3_endpoint_ids: Sequence[pulumi.Input[str]] = ()   # ... or one of these (EKS: the S3 interface endpoint)
    protect: bool = False


class ModelStore(pulumi.ComponentResource):
    """Outputs: bucket_name, bucket_arn."""

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-platform:storage:ModelStore", name, None, opts)
        tags = {"llm-platform:stack": args.stack, "llm-platform:purpose": "model-weights"}
        bucket = private_bucket(f"{name}-bucket", prefix=f"llm-{args.stack}-models-", tags=tags, parent=self,
                                protect=args.protect, kms_key_arn=args.kms_key_arn)
        arn = bucket.arn
        aws.s3.BucketPolicy(f"{name}-policy", bucket=bucket.id, policy=pulumi.Output.json_dumps({
            "Version": "2012-10-17", "Statement": [
                tls_only_statement(arn),
                {"Sid": "ReadsOnlyThroughTheVpcEndpoint", "Effect": "Deny", "Principal": "*",
                 "Action": ["s3:GetObject", "s3:GetObjectVersion"], "Resource": pulumi.Output.concat(arn, "/*"),
                 "Condition": {"StringNotEquals": {"aws:SourceVpce": [args.s3_endpoint_id,
                                                                       *args.extra_s3_endpoint_ids]
                                                   if args.extra_s3_endpoint_ids else args.s3_endpoint_id}}},
            ]}), opts=pulumi.ResourceOptions(parent=self))
        self.bucket_name, self.bucket_arn = bucket.bucket, arn
        self.register_outputs({"bucket_name": self.bucket_name, "bucket_arn": self.bucket_arn})

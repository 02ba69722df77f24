"""PlatformKeys: the stack's KMS customer managed key and its Secrets Manager secrets.

Defaults: one symmetric CMK per stack, automatic yearly rotation, 30-day deletion window, a key
policy that lets only this account's IAM policies, CloudWatch Logs (for this stack's log groups),
EC2 Auto Scaling (encrypted EBS on launch) and CloudWatch alarms (publishing to the encrypted SNS
topic) use it. One API key per client in `api.clients` (48 random alphanumerics from
pulumi-random: ~285 bits), and the Hugging Face token when `hfToken` is set as a config secret.
Who may read which secret is granted on the reading roles (GpuInstanceGroup), not here.

    PlatformKeys(name, PlatformKeysArgs(stack=..., clients=[...]), opts)
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random


@dataclass(frozen=True)
class PlatformKeysArgs:
    stack: str                                     # names the key alias, secrets and log-group prefix
    clients: Sequence[str]                         # one generated API key (and secret) per client
    hf_token: pulumi.Input[str] | None = None   # stored as a secret when given (a Pulumi secret value)
    protect: bool = False                          # protect the key and secrets; 30-day secret recovery
    extra_log_groups: Sequence[str] = ()           # further log groups CloudWatch Logs may encrypt with the key


class PlatformKeys(pulumi.ComponentResource):
    """Outputs: key_arn, key_id, client_secret_arns (client -> secret ARN), hf_token_secret_arn (or None)."""

    key_arn: pulumi.Output[str]
    key_id: pulumi.Output[str]
    client_secret_arns: dict[str, pulumi.Output[str]]
    hf_token_secret_arn: pulumi.Output[str] | None

    def __init__(self, name: str, args: PlatformKeysArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-platform:security:PlatformKeys", name, None, opts)
        stack, protect = args.stack, args.protect
        child = pulumi.ResourceOptions(parent=self)
        keep = pulumi.ResourceOptions(parent=self, protect=protect)
        ident = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self))
        log_group_prefix = f"/llm-platform/{stack}"
        extra = tuple(args.extra_log_groups)

        policy = pulumi.Output.all(ident.account_id, region.region).apply(
            lambda a: pulumi.Output.json_dumps(key_policy(a[0], a[1], log_group_prefix, extra)))
        key = aws.kms.Key(
            f"{name}-cmk", description=f"llm-platform {stack}: EBS, secrets, logs, model store, SNS",
            enable_key_rotation=True, deletion_window_in_days=30, key_usage="ENCRYPT_DECRYPT",
            customer_master_key_spec="SYMMETRIC_DEFAULT", policy=policy,
            tags={"llm-platform:stack": stack}, opts=keep)
        aws.kms.Alias(f"{name}-alias", name=f"alias/llm-platform-{stack}", target_key_id=key.key_id, opts=child)

        self.client_secret_arns = {}
        for client in args.clients:
            password = random.RandomPassword(f"{name}-{client}-api-key", length=48, special=False, min_lower=4,
                                             min_upper=4, min_numeric=4, opts=child)
            secret = aws.secretsmanager.Secret(
                f"{name}-{client}-api-key", name=f"llm-platform/{stack}/clients/{client}",
                description=f"API key of client {client} for the {stack} LLM endpoints",
                kms_key_id=key.arn, recovery_window_in_days=30 if protect else 7,
                tags={"llm-platform:stack": stack, "llm-platform:client": client}, opts=keep)
            aws.secretsmanager.SecretVersion(f"{name}-{client}-api-key", secret_id=secret.id,
                                             secret_string=password.result, opts=child)
            self.client_secret_arns[client] = secret.arn

        self.hf_token_secret_arn = None
        if args.hf_token is not None:
            hf_secret = aws.secretsmanager.Secret(
                f"{name}-hf-token", name=f"llm-platform/{stack}/huggingface-token",
                description="Hugging Face token for staging gated models into the model store",
                kms_key_id=key.arn, recovery_window_in_days=30 if protect else 7,
                tags={"llm-platform:stack": stack}, opts=keep)
            aws.secretsmanager.SecretVersion(f"{name}-hf-token", secret_id=hf_secret.id,
                                             secret_string=pulumi.Output.secret(args.hf_token), opts=child)
            self.hf_token_secret_arn = hf_secret.arn

        self.key_arn, self.key_id = key.arn, key.key_id
        self.register_outputs({"key_arn": self.key_arn, "key_id": self.key_id,
                               "client_secret_arns": self.client_secret_arns,
                               "hf_token_secret_arn": self.hf_token_secret_arn})


def key_policy(account: str, region: str, log_group_prefix: str, extra_log_groups: tuple[str, ...] = ()) -> dict:
    """`extra_log_groups`: further log group names CloudWatch Logs may encrypt with the key (EKS control plane)."""
    root = f"arn:aws:iam::{account}:root"
    asg_role = f"arn:aws:iam::{account}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"
    use = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    return {"Version": "2012-10-17", "Statement": [
        {"Sid": "AccountIamPolicies", "Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:*",
         "Resource": "*"},
        {"Sid": "CloudWatchLogsForThisStack", "Effect": "Allow",
         "Principal": {"Service": f"logs.{region}.amazonaws.com"}, "Action": use, "Resource": "*",
         "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                   f"arn:aws:logs:{region}:{account}:log-group:{log_group_prefix}/*"}}},
        {"Sid": "WafLogsForThisStack", "Effect": "Allow",
         "Principal": {"Service": f"logs.{region}.amazonaws.com"}, "Action": use, "Resource": "*",
         "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                   f"arn:aws:logs:{region}:{account}:log-group:aws-waf-logs-llm-*"}}},
        *([{"Sid": "CloudWatchLogsOtherGroups", "Effect": "Allow",
            "Principal": {"Service": f"logs.{region}.amazonaws.com"}, "Action": use, "Resource": "*",
            "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": [
                f"arn:aws:logs:{region}:{account}:log-group:{g}" for g in extra_log_groups]}}}]
          if extra_log_groups else []),
        # Service-linked roles may not exist yet when the key is made (KMS refuses a policy naming a
        # missing principal), so they are matched by ARN in a condition, not named as principals.
        {"Sid": "AutoScalingEncryptedVolumes", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": use,
         "Resource": "*", "Condition": {"ArnEquals": {"aws:PrincipalArn": asg_role}}},
        {"Sid": "AutoScalingGrants", "Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:CreateGrant",
         "Resource": "*", "Condition": {"ArnEquals": {"aws:PrincipalArn": asg_role},
                                        "Bool": {"kms:GrantIsForAWSResource": "true"}}},
        {"Sid": "EcrPullThroughCacheCredential", "Effect": "Allow", "Principal": {"AWS": "*"},
         "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{account}:role/aws-service-role/"
                                     "pullthroughcache.ecr.amazonaws.com/AWSServiceRoleForECRPullThroughCache"},
                       "StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}}},
        {"Sid": "CloudWatchAlarmsToEncryptedTopic", "Effect": "Allow",
         "Principal": {"Service": "cloudwatch.amazonaws.com"},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceAccount": account}}},
    ]}

"""ImageCache: ECR pull-through cache rules, so air-gapped instances pull public images privately.

Instances pull `<account>.dkr.ecr.<region>.amazonaws.com/<prefix>/<repository>@sha256:<digest>`
through the ECR interface endpoints; ECR fetches from the upstream registry on its side. Rules:
`ecr-public` (no credential) and, when a deployment uses a Docker Hub image, `docker-hub`, which
ECR reads and decrypts when the rule is created, so it must exist first: either
`images.docker_hub_credential_arn` (a secret named ecr-pullthroughcache/..., keys username and
accessToken), or `images.docker_hub_username` plus the secret config `dockerHubToken`, from which
this component writes a CMK-encrypted secret. The rules are account- and region-wide: with
several stacks in one account and region, one owns them (`images.create_cache_rules`).
"""
from __future__ import annotations

import pulumi
import pulumi_aws as aws

from llm_platform import catalog
from llm_platform.settings.images import credential_problem as _credential_problem
from llm_platform.settings.images import image_keys as _image_keys
from llm_platform.settings.images import needed_upstreams, overrides_of


def image_overrides(config) -> dict:
    """The stack's own image references (images.<key>: <repo>@sha256:...), by catalog key."""
    return overrides_of(config.images.model_dump())


def image_keys(config, plans) -> set[str]:
    """Which catalog images a stack runs."""
    return _image_keys(config.platform, {p.runtime for p in plans})


def credential_problem(config, image_keys: set[str], overrides: dict) -> str | None:
    """Why the cache rules cannot be made as configured (checked before any resource exists), or None."""
    problem = _credential_problem(config.platform, config.images.model_dump(),
                                  {k for k in image_keys if k not in ("proxy", "awscli")}, config.docker_hub_token)
    return None if problem is None else f"llm-platform:images.docker_hub_credential_arn: {problem}"


class ImageCache(pulumi.ComponentResource):
    def __init__(self, name: str, *, stack: str, image_keys: set[str], overrides: dict,
                 docker_hub_credential_arn: str | None, kms_key_arn: pulumi.Input[str],
                 docker_hub_username: str | None = None, docker_hub_token: pulumi.Output[str] | None = None,
                 create_rules: bool = True, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-platform:images:ImageCache", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        urls = catalog.load().image_upstreams
        self.docker_hub_secret: aws.secretsmanager.Secret | None = None
        for upstream in sorted(needed_upstreams(image_keys, overrides) if create_rules else ()):
            credential, after = None, []
            if urls[upstream]["credential"] == "required":
                if docker_hub_credential_arn:
                    credential = docker_hub_credential_arn
                else:
                    self.docker_hub_secret = aws.secretsmanager.Secret(
                        f"{name}-{upstream}", name=f"ecr-pullthroughcache/llm-{stack}/{upstream}",
                        description=f"{upstream} read-only credential for the ECR pull-through cache",
                        kms_key_id=kms_key_arn, recovery_window_in_days=7,
                        tags={"llm-platform:stack": stack}, opts=child)
                    version = aws.secretsmanager.SecretVersion(
                        f"{name}-{upstream}", secret_id=self.docker_hub_secret.id,
                        secret_string=pulumi.Output.secret(pulumi.Output.json_dumps(
                            {"username": docker_hub_username, "accessToken": docker_hub_token})), opts=child)
                    credential, after = self.docker_hub_secret.arn, [version]
            aws.ecr.PullThroughCacheRule(f"{name}-{upstream}", ecr_repository_prefix=upstream,
                                         upstream_registry_url=urls[upstream]["url"], credential_arn=credential,
                                         opts=pulumi.ResourceOptions(parent=self, depends_on=after))
        self.register_outputs({"docker_hub_secret_arn": self.docker_hub_secret.arn if self.docker_hub_secret else None})

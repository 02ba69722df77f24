"""ImageCache: ECR pull-through cache rules, so air-gapped instances pull public images privately.

Instances pull `<account>.dkr.ecr.<region>.amazonaws.com/<prefix>/<repository>@sha256:<digest>`
through the ECR interface endpoints; ECR fetches from the upstream registry on its side. Rules:
`ecr-public` (no credential) and, when a deployment uses a Docker Hub image, `docker-hub`, which
ECR reads and decrypts when the rule is created, so it must exist first: either
`images.docker_hub_credential_arn` (a secret named ecr-pullthroughcache/..., keys username and
accessToken), or `images.docker_hub_username` plus the secret config `dockerHubToken`, from which
this component writes a CMK-encrypted secret. The rules are account- and region-wide: with
several stacks in one account and region, one owns them (`images.create_cache_rules`).

Which upstreams a stack needs is worked out by the program (llm_platform/program/images.py).

The stack that makes the rules also makes the cache's repositories, one per catalog image of those
upstreams (`<prefix>/<repository>`), so no instance or node role needs ecr:CreateRepository: the
cache fills an existing repository on a first pull (ecr:BatchImportUpstreamImage), and roles pull
from exactly these repositories.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from llm_platform import catalog


@dataclass(frozen=True)
class ImageCacheArgs:
    stack: str
    kms_key_arn: pulumi.Input[str]                      # encrypts a Docker Hub credential secret made here
    upstreams: Sequence[str] = ()                       # catalog upstream keys (docker-hub, ecr-public): one rule each
    docker_hub_credential_arn: str | None = None     # an existing ecr-pullthroughcache/... secret
    docker_hub_username: str | None = None           # with docker_hub_token: the secret is made here
    docker_hub_token: pulumi.Input[str] | None = None


def cache_repositories(upstream: str) -> list[str]:
    """The repositories the cache fills for an upstream: every available catalog image pulled through it."""
    return sorted(f"{img['cache_prefix']}/{img['repository']}" for img in catalog.load().images.values()
                  if img.get("available", True) and img.get("upstream") == upstream)


class ImageCache(pulumi.ComponentResource):
    """Outputs: docker_hub_secret_arn (the secret this component made, or None)."""

    docker_hub_secret_arn: pulumi.Output[str] | None

    def __init__(self, name: str, args: ImageCacheArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-platform:images:ImageCache", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        urls = catalog.load().image_upstreams
        self.docker_hub_secret_arn = None
        for upstream in sorted(args.upstreams):
            if upstream not in urls:
                raise ValueError(f"ImageCacheArgs.upstreams: unknown upstream {upstream!r} (known: {', '.join(urls)})")
            credential: pulumi.Input[str] | None = None
            after: list[pulumi.Resource] = []
            if urls[upstream]["credential"] == "required":
                if args.docker_hub_credential_arn:
                    credential = args.docker_hub_credential_arn
                else:
                    secret = aws.secretsmanager.Secret(
                        f"{name}-{upstream}", name=f"ecr-pullthroughcache/llm-{args.stack}/{upstream}",
                        description=f"{upstream} read-only credential for the ECR pull-through cache",
                        kms_key_id=args.kms_key_arn, recovery_window_in_days=7,
                        tags={"llm-platform:stack": args.stack}, opts=child)
                    version = aws.secretsmanager.SecretVersion(
                        f"{name}-{upstream}", secret_id=secret.id,
                        secret_string=pulumi.Output.secret(pulumi.Output.json_dumps(
                            {"username": args.docker_hub_username, "accessToken": args.docker_hub_token})), opts=child)
                    credential, after = secret.arn, [version]
                    self.docker_hub_secret_arn = secret.arn
            aws.ecr.PullThroughCacheRule(f"{name}-{upstream}", ecr_repository_prefix=upstream,
                                         upstream_registry_url=urls[upstream]["url"], credential_arn=credential,
                                         opts=pulumi.ResourceOptions(parent=self, depends_on=after))
            for repo in cache_repositories(upstream):
                # mutable tags: the cache refreshes a tag when upstream moves it; what runs is pinned by digest
                aws.ecr.Repository(f"{name}-{repo.replace('/', '-')}", name=repo, image_tag_mutability="MUTABLE",
                                   image_scanning_configuration={"scan_on_push": True}, force_delete=True,
                                   tags={"llm-platform:stack": args.stack, "llm-platform:cache": upstream},
                                   opts=child)
        self.register_outputs({"docker_hub_secret_arn": self.docker_hub_secret_arn})

"""ImageCache: ECR pull-through cache rules, so air-gapped instances pull public images privately.

Instances pull `<account>.dkr.ecr.<region>.amazonaws.com/<prefix>/<repository>@sha256:<digest>`
through the ECR interface endpoints; ECR fetches from the upstream registry on its side. Rules:
`ecr-public` (no credential) and, when a deployment uses a Docker Hub image, `docker-hub`, which
needs a credential: `images.docker_hub_credential_arn`, or else a CMK-encrypted secret
`ecr-pullthroughcache/llm-<stack>/docker-hub` made here for an operator to fill once with
`{"username": ..., "accessToken": ...}` (a read-only Docker Hub token).
"""
from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_aws as aws

import catalog


class ImageCache(pulumi.ComponentResource):
    def __init__(self, name: str, *, stack: str, image_keys: set[str], overrides: dict,
                 docker_hub_credential_arn: Optional[str], kms_key_arn: pulumi.Input[str],
                 opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("llm-platform:images:ImageCache", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        images = catalog.load().images
        upstreams = {images[k]["upstream"] for k in image_keys if k not in overrides and images[k].get("available", True)}
        self.docker_hub_secret: Optional[aws.secretsmanager.Secret] = None
        urls = catalog.load().image_upstreams
        for upstream in sorted(upstreams):
            credential = None
            if urls[upstream]["credential"] == "required":
                if docker_hub_credential_arn:
                    credential = docker_hub_credential_arn
                else:
                    self.docker_hub_secret = aws.secretsmanager.Secret(
                        f"{name}-{upstream}", name=f"ecr-pullthroughcache/llm-{stack}/{upstream}",
                        description=f"{upstream} read-only credential for the ECR pull-through cache: put "
                                    '{"username": ..., "accessToken": ...} here before the first instance boots',
                        kms_key_id=kms_key_arn, recovery_window_in_days=7,
                        tags={"llm-platform:stack": stack}, opts=child)
                    credential = self.docker_hub_secret.arn
            aws.ecr.PullThroughCacheRule(f"{name}-{upstream}", ecr_repository_prefix=upstream,
                                         upstream_registry_url=urls[upstream]["url"], credential_arn=credential,
                                         opts=child)
        self.register_outputs({"docker_hub_secret_arn": self.docker_hub_secret.arn if self.docker_hub_secret else None})

"""The stack program: reads the stack config, plans, maps config and plans to component Args and picks
the platform component. The only place that reads settings for components."""
import pulumi

from llm_platform.components.images import credential_problem, image_keys, image_overrides
from llm_platform.components.llm_platform import LlmPlatform
from llm_platform.settings import ConfigErrors

from .runtime_config import load as load_config
from llm_platform.sizing.planner import PlanningError, plan_stack


def main() -> None:
    """What `pulumi up` runs for a stack of this project (the root __main__.py calls it)."""
    try:
        config = load_config()
        plans = plan_stack(config)
    except (ConfigErrors, PlanningError) as exc:
        # RunError: reported to the user without a Python traceback, before any resource exists.
        raise pulumi.RunError(str(exc)) from None

    # checked before anything is created: ECR reads the Docker Hub credential when the cache rule is made
    problem = credential_problem(config, image_keys(config, plans), image_overrides(config))
    if problem:
        raise pulumi.RunError(problem)

    secrets = pulumi.Config()
    hf_token = secrets.get_secret("hfToken") if config.hf_token else None
    docker_hub_token = secrets.get_secret("dockerHubToken") if config.docker_hub_token else None
    try:
        platform = LlmPlatform(f"llm-{pulumi.get_stack()}", config, plans, hf_token=hf_token,
                               docker_hub_token=docker_hub_token)
    except ValueError as exc:
        raise pulumi.RunError(str(exc)) from None

    pulumi.export("endpoints", platform.endpoints)
    if platform.keys is not None:       # ec2 and eks: keys, model store, images in the AWS account
        pulumi.export("client_key_secret_arns", {c: s.arn for c, s in platform.keys.client_secrets.items()})
        if platform.keys.hf_token_secret is not None:
            pulumi.export("hf_token_secret_arn", platform.keys.hf_token_secret.arn)
        if platform.images.docker_hub_secret is not None:
            pulumi.export("docker_hub_credential_secret_arn", platform.images.docker_hub_secret.arn)
        pulumi.export("model_bucket", platform.store.bucket_name)
        pulumi.export("model_prefixes", {p.name: f"models/{p.name}/{p.revision or 'unpinned'}" for p in plans})
    if platform.dashboard_url is not None:
        pulumi.export("dashboard_url", platform.dashboard_url)
    if platform.lb is not None:
        pulumi.export("load_balancer_dns", platform.lb.alb.dns_name)
    if platform.cluster is not None:
        pulumi.export("cluster_name", platform.cluster.cluster.name)
    if platform.ca_cert_pem is not None:
        pulumi.export("internal_ca_certificate_pem", platform.ca_cert_pem)
    pulumi.export("deployments", {p.name: p.as_dict() for p in plans})
    pulumi.export("monthly_cost_usd", round(sum(p.monthly_cost_usd for p in plans), 2))


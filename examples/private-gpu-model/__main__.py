"""A platform team's own program: a private VPC, the KMS key and client keys, one GPU model sized by
llm-platform's planner, and its alarms and dashboard, composed from the components with typed Args.

Nothing here reads llm-platform's stack config: the program's own config (`pulumi config set
private-gpu-model:clientCidr ...`) and one model spec are its inputs.

    pulumi up                                          # with AWS credentials
    python ../../plan.py --program . [--json]          # offline: resources and policy verdicts
"""
import pulumi

from llm_platform.components import (
    AlarmArgs,
    DashboardPanel,
    Ec2Serving,
    GpuInstanceGroupArgs,
    ImageCache,
    ImageCacheArgs,
    InternalLoadBalancer,
    InternalLoadBalancerArgs,
    ModelDeployment,
    ModelDeploymentArgs,
    ModelStore,
    ModelStoreArgs,
    Monitoring,
    MonitoringArgs,
    PlatformKeys,
    PlatformKeysArgs,
    PrivateNetwork,
    PrivateNetworkArgs,
)
from llm_platform.settings import ConfigErrors
from llm_platform.sizing.planner import PlanningError
from llm_platform.sizing.single import plan_deployment

config = pulumi.Config()
stack = pulumi.get_stack()
client_cidr = config.get("clientCidr") or "10.0.0.0/16"
domain = config.get("domain") or "llm.internal.example.com"
docker_hub_credential_arn = config.get("dockerHubCredentialArn") or \
    "arn:aws:secretsmanager:us-east-1:123456789012:secret:ecr-pullthroughcache/docker-hub-Qx7LmZ"

# --- what to serve: the planner picks the instance type, parallelism, replicas and flags (prod rules:
# pinned revision, checksums, provenance, at least two replicas in different zones)
MODEL = {
    "name": "llama-8b", "model": "meta-llama/Llama-3.1-8B-Instruct", "runtime": "vllm", "precision": "bf16",
    "max_model_len": 16384, "concurrency": 32, "replicas": 2,
    "revision": "0e9e39f249a16976918f6564b8830bc894c89659",
    "checksums": {"manifest": "SHA256SUMS",
                  "sha256": "eea47a19a82a204ff17062f46bf710f4ca1009ca590734e7d901dbcbd7bde0e8"},
    "provenance": {"source": "https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct", "license": "llama3.1",
                   "approved_by": "ai-security-review@example.com", "review_status": "approved"},
}
try:
    plan = plan_deployment(MODEL, environment="prod", platform="ec2")
except (ConfigErrors, PlanningError) as exc:
    raise pulumi.RunError(str(exc)) from None

# --- the platform, piece by piece
keys = PlatformKeys(f"{stack}-keys", PlatformKeysArgs(stack=stack, clients=["apps"], protect=True))
network = PrivateNetwork(f"{stack}-network", PrivateNetworkArgs(
    stack=stack, kms_key_arn=keys.key_arn, cidr="10.60.0.0/16", availability_zones=2, egress="none",
    protect=True))
store = ModelStore(f"{stack}-models", ModelStoreArgs(stack=stack, kms_key_arn=keys.key_arn,
                                                     s3_endpoint_id=network.s3_endpoint_id, protect=True))
images = ImageCache(f"{stack}-images", ImageCacheArgs(stack=stack, kms_key_arn=keys.key_arn,
                                                      upstreams=["docker-hub", "ecr-public"],
                                                      docker_hub_credential_arn=docker_hub_credential_arn))
monitoring = Monitoring(f"{stack}-monitoring", MonitoringArgs(
    stack=stack, kms_key_arn=keys.key_arn, kms_key_id=keys.key_id, alarm_email=config.get("alarmEmail"),
    protect=True))
api = InternalLoadBalancer(f"{stack}-api", InternalLoadBalancerArgs(
    stack=stack, vpc_id=network.vpc_id, vpc_cidr=network.vpc_cidr, subnet_ids=network.private_subnet_ids,
    s3_prefix_list_id=network.s3_prefix_list_id, kms_key_arn=keys.key_arn, deployments=[plan.name],
    allowed_client_cidrs=[client_cidr], domain=domain, protect=True))
deployment = ModelDeployment(f"{stack}-{plan.name}", ModelDeploymentArgs(
    plan=plan, after=[images],
    ec2=Ec2Serving(
        fleet=GpuInstanceGroupArgs(
            plan=plan, stack=stack, environment="prod", subnet_ids=network.private_subnet_ids,
            security_group_id=api.instance_security_group_id, target_group_arn=api.target_group_arns[plan.name],
            kms_key_arn=keys.key_arn, model_bucket_name=store.bucket_name, model_bucket_arn=store.bucket_arn,
            client_secret_arns=keys.client_secret_arns, log_group_names=monitoring.log_group_names,
            manifest=MODEL["checksums"]["manifest"], manifest_sha256=MODEL["checksums"]["sha256"],
            provenance=MODEL["provenance"], domain=domain),
        alarms=AlarmArgs(stack=stack, topic_arn=monitoring.topic_arn, lb_arn_suffix=api.arn_suffix,
                         tg_arn_suffix=api.target_group_arn_suffixes[plan.name]))))
region = pulumi.Config("aws").get("region") or "us-east-1"
dashboard_url = monitoring.dashboard([DashboardPanel(deployment=plan.name, runtime=plan.runtime,
                                                     asg_name=deployment.asg_name, lb_arn_suffix=api.arn_suffix,
                                                     tg_arn_suffix=api.target_group_arn_suffixes[plan.name])], region)

pulumi.export("endpoint", api.endpoints[plan.name])
pulumi.export("instance_type", plan.instance_type)
pulumi.export("client_key_secret_arns", keys.client_secret_arns)
pulumi.export("internal_ca_certificate_pem", api.ca_cert_pem)
pulumi.export("model_bucket", store.bucket_name)
pulumi.export("dashboard_url", dashboard_url)

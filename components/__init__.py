"""Pulumi ComponentResources, each `Component(name, ComponentArgs(...), opts)` with a frozen-dataclass Args,
typed outputs as attributes (exactly those registered with register_outputs) and children named
`<name>-<role>`. They take DeploymentPlans (llm_platform.sizing) and do no sizing arithmetic; none reads a
stack config (llm_platform/program maps our stack config to these Args)."""
from .deployment import Ec2Serving, ModelDeployment, ModelDeploymentArgs
from .eks import GpuCluster, GpuClusterArgs
from .gate import DeployGate, DeployGateArgs
from .gpu_fleet import GpuInstanceGroup, GpuInstanceGroupArgs
from .images import ImageCache, ImageCacheArgs
from .k8s_serving import KubernetesServing, KubernetesServingArgs
from .karpenter import GpuNodeProvisioner, GpuNodeProvisionerArgs
from .keys import PlatformKeys, PlatformKeysArgs
from .load_balancer import InternalLoadBalancer, InternalLoadBalancerArgs
from .local_docker import DockerHost, DockerHostArgs, DockerServingArgs
from .model_store import ModelStore, ModelStoreArgs
from .monitoring import AlarmArgs, DashboardPanel, Monitoring, MonitoringArgs
from .network import PrivateNetwork, PrivateNetworkArgs
from .node_cache import NodeModelCache, NodeModelCacheArgs
from .platforms import (
                        ApiOptions,
                        DockerPlatform,
                        DockerPlatformArgs,
                        Ec2Platform,
                        Ec2PlatformArgs,
                        EksOptions,
                        EksPlatform,
                        EksPlatformArgs,
                        ImageOptions,
                        ModelSource,
                        MonitoringOptions,
                        NetworkOptions,
                        Platform,
)

__all__ = [
    "AlarmArgs", "ApiOptions", "DashboardPanel", "DockerHost", "DockerHostArgs", "DockerPlatform",
    "DockerPlatformArgs", "DockerServingArgs", "DeployGate", "DeployGateArgs", "Ec2Platform", "Ec2PlatformArgs",
    "Ec2Serving", "EksOptions",
    "EksPlatform", "EksPlatformArgs", "GpuCluster", "GpuClusterArgs", "GpuInstanceGroup", "GpuInstanceGroupArgs",
    "GpuNodeProvisioner", "GpuNodeProvisionerArgs", "NodeModelCache", "NodeModelCacheArgs",
    "ImageCache", "ImageCacheArgs", "ImageOptions", "InternalLoadBalancer", "InternalLoadBalancerArgs",
    "KubernetesServing", "KubernetesServingArgs", "ModelDeployment", "ModelDeploymentArgs", "ModelSource",
    "ModelStore", "ModelStoreArgs", "Monitoring", "MonitoringArgs", "MonitoringOptions", "NetworkOptions",
    "Platform", "PlatformKeys", "PlatformKeysArgs", "PrivateNetwork", "PrivateNetworkArgs",
]

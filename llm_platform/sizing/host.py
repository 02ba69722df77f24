"""Host (CPU-side) resources a serving container needs on its node, from the plan. Pure.

Why: a Kubernetes pod with no CPU or memory request is BestEffort, the first evicted under node
pressure, and the scheduler counts it as needing nothing; vLLM holds tens of GiB of host memory
while it loads (safetensors are memory-mapped: the pages of the shards this node loads are read
into the page cache, which the kernel charges to the container's cgroup) and keeps CUDA contexts,
pinned transfer buffers, the tokenizer and torch.compile workers resident afterwards.

Estimate, per node of a replica:
- memory: the weights this node loads (the replica's weights over its nodes) + PER_GPU_GIB for each
  GPU's worker process (CUDA context and pinned buffers) + BASE_GIB (API server, tokenizer, compile
  workers); at most HEADROOM of the instance's memory, which leaves room for the kubelet's reserve,
  the system DaemonSets (CNI, kube-proxy, Pod Identity agent, NVIDIA device plugin, DCGM exporter)
  and the proxy sidecar. The limit is that cap: past it the container is OOM-killed, not the node.
- CPU: CPU_PER_GPU per GPU worker + BASE_CPU (API server and tokenization), at most HEADROOM of the
  instance's vCPUs (CPU_HEADROOM). No CPU limit: throttling a token loop costs latency for nothing.
The serving pod takes every GPU of its node (one pod per node), so these are shares of one node.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from llm_platform import catalog
from llm_platform.sizing.planner import DeploymentPlan

PER_GPU_GIB = 4.0       # a worker's CUDA context (~0.5-1 GiB) plus pinned host buffers for transfers
BASE_GIB = 6.0          # API server process, tokenizer, torch.compile / Triton compile workers
CPU_PER_GPU = 2.0       # one busy core per worker loop plus its helper threads
BASE_CPU = 2.0
HEADROOM = 0.8          # of the instance's memory: the rest for the kubelet reserve, DaemonSets and the proxy
CPU_HEADROOM = 0.75     # of its vCPUs (small nodes: the system DaemonSets request a few hundred millicores)


@dataclass(frozen=True)
class HostResources:
    cpu_millicores: int
    memory_request_gib: int
    memory_limit_gib: int

    def requests(self) -> dict[str, str]:
        return {"cpu": f"{self.cpu_millicores}m", "memory": f"{self.memory_request_gib}Gi"}

    def limits(self) -> dict[str, str]:
        return {"memory": f"{self.memory_limit_gib}Gi"}


def host_resources(plan: DeploymentPlan) -> HostResources:
    inst = catalog.load().instances[plan.instance_type]
    gpus = plan.gpus_per_node
    cap_gib = math.floor(inst.memory_mib / 1024 * HEADROOM)
    need_gib = math.ceil(plan.memory.weights_gib / plan.nodes_per_replica + PER_GPU_GIB * gpus + BASE_GIB)
    cpu = min(CPU_PER_GPU * gpus + BASE_CPU, inst.vcpus * CPU_HEADROOM)
    return HostResources(cpu_millicores=int(cpu * 1000), memory_request_gib=min(need_gib, cap_gib),
                         memory_limit_gib=cap_gib)

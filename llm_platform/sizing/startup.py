"""How long a replica takes to serve, by where it starts from: cold, from a warm pool, from a verified cache.

The planner's `startup_seconds` covers the model's data path on a running node: download from the model store,
SHA-256 of every file, load into GPU memory, compile and CUDA-graph capture (planner.py's constants). A replica
that scales out starts from one of four places, and only the first pays for everything:

- cold: a new instance: launch and boot, pull the runtime image, then the whole data path.
- warm pool (EC2): a Stopped instance of the Auto Scaling group's warm pool already pulled the image and
  downloaded and verified the weights before it stopped (serving/userdata.py); starting it costs the resume, a
  digest check of the manifest against the plan, the load and the warm-up.
- snapshot (EC2, optional): the weights arrive on an EBS volume created from a snapshot of the verified model
  directory: nothing is downloaded or hashed, but without Fast Snapshot Restore the blocks load lazily from S3 on
  first read (slower than the download for small models: the plan says so); with it the volume reads at its
  provisioned throughput from the start.
- cached (EKS): a pod restart or a second replica on a node whose instance store already holds the verified
  copy under the manifest digest: load and warm-up only (the image is on the node too).

These are planning estimates (policy constants, not measurements): they set health-check grace periods
(cold), scaling-policy warm-ups (warm pool on EC2) and the start-up window during which Karpenter must not
disrupt a pod. Measured numbers for a given model belong in its runbook.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from . import planner

INSTANCE_BOOT_S = 90      # RunInstances to cloud-init on a GPU instance (NVIDIA driver load, EBS attach)
IMAGE_PULL_S = 120        # the vLLM CUDA image (~10 GB compressed) from ECR in-region, pull and unpack
RESUME_S = 60             # a Stopped instance to running units (boot, keys from Secrets Manager, docker start)
SNAPSHOT_LAZY_GIB_PER_S = 0.15   # first read of a volume restored from a snapshot: blocks come from S3 on demand
MODEL_VOLUME_MIB_PER_S = 1000     # the model volume's gp3 throughput (components/gpu_fleet.py provisions it)


@dataclass(frozen=True)
class StartupEstimate:
    cold_seconds: int                  # new instance, nothing on it
    warm_pool_seconds: int | None   # EC2: from the warm pool (None where there is no warm pool)
    snapshot_seconds: int | None    # EC2: new instance with the weights on a volume from a snapshot
    cached_seconds: int                # weights verified on local storage, image present: load + warm-up

    def as_dict(self) -> dict[str, int | None]:
        return {"cold_seconds": self.cold_seconds, "warm_pool_seconds": self.warm_pool_seconds,
                "snapshot_seconds": self.snapshot_seconds, "cached_seconds": self.cached_seconds}


def _round(seconds: float) -> int:
    return int(math.ceil(seconds / 10) * 10)


def estimate(weights_gib: float, nodes: int, platform: str, warm_pool: bool, snapshot: bool,
             fast_restore: bool = False) -> StartupEstimate:
    """Start-up times for one replica whose weights are `weights_gib` over `nodes` nodes (each node loads
    its own stage, so per-node bytes set the time)."""
    per_node = weights_gib / max(nodes, 1)
    load = planner.WARMUP_S + per_node / planner.LOAD_GIB_PER_S
    data_path = planner.WARMUP_S + per_node * (1 / planner.DOWNLOAD_GIB_PER_S + 1 / planner.VERIFY_GIB_PER_S
                                               + 1 / planner.LOAD_GIB_PER_S)
    ec2 = platform == "ec2"
    snapshot_rate = (min(MODEL_VOLUME_MIB_PER_S / 1024, planner.LOAD_GIB_PER_S) if fast_restore
                     else SNAPSHOT_LAZY_GIB_PER_S)
    return StartupEstimate(
        cold_seconds=_round(INSTANCE_BOOT_S + IMAGE_PULL_S + data_path),
        warm_pool_seconds=_round(RESUME_S + load) if ec2 and warm_pool else None,
        snapshot_seconds=(_round(INSTANCE_BOOT_S + IMAGE_PULL_S + planner.WARMUP_S + per_node / snapshot_rate)
                          if ec2 and snapshot else None),
        cached_seconds=_round(load))

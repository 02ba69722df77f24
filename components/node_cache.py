"""NodeModelCache: a verified model copy per GPU node, keyed by the manifest digest, shared by the pods on it.

Karpenter's EC2NodeClass puts the instance store in RAID0 (nodeadm mounts it at /mnt/k8s-disks/0). Under
CACHE_ROOT each verified model lives in a directory named by its manifest's SHA-256, read-only, with a
`.verified` marker. A pod's fetch init container (cached_fetch_script) reuses that directory when the marker
and the manifest in it still match the pinned digest, else downloads into a private temporary directory,
verifies every file with the one verification script (serving/verify.py, as on EC2 and Docker) and renames it
into place; the runtime mounts only `<digest>/` read-only. A restarted pod or a second replica on the node
starts from the verified copy without downloading or hashing the weights again.

How pods reach the node's directory while their namespace enforces the `restricted` Pod Security level (which
admits no hostPath volume): through a PersistentVolumeClaim bound to a hostPath PersistentVolume without node
affinity, which resolves to the same path on whichever node the pod runs. PersistentVolumes are cluster-scoped:
only the platform (cluster admin) decides the path, never a workload. Kubelet would create a missing hostPath
directory as root; the GPU nodes' user data (NODE_USER_DATA, in Karpenter's EC2NodeClass) makes CACHE_ROOT owned
by the runtime uid once nodeadm has mounted the instance store, so no privileged pod is needed.
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from llm_platform.serving.verify import render_verify_function

CACHE_ROOT = "/mnt/k8s-disks/0/llm-models"
CACHE_MOUNT = "/model-cache"          # where the fetch init container sees CACHE_ROOT
RUNTIME_UID = 1000                    # the fetch and runtime containers' uid (components/k8s_serving.py)

# EC2NodeClass userData (AL2023: MIME multipart, merged with Karpenter's NodeConfig): once nodeadm has mounted the
# instance store RAID0, make the cache root owned by the runtime uid (kubelet would create it root-owned).
NODE_USER_DATA = f"""MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="LLMPLATFORM"

--LLMPLATFORM
Content-Type: text/x-shellscript; charset="us-ascii"

#!/bin/bash
set -euo pipefail
for _ in $(seq 1 90); do mountpoint -q /mnt/k8s-disks/0 && break; sleep 2; done
install -d -o {RUNTIME_UID} -g {RUNTIME_UID} -m 0750 {CACHE_ROOT}

--LLMPLATFORM--
"""


def cached_fetch_script() -> str:
    """The fetch init container with the node cache: reuse <digest>/ if verified, else download, verify, publish."""
    return render_verify_function() + f"""set -eu
root={CACHE_MOUNT}
manifest=/tmp/SHA256SUMS
if [ -z "$MANIFEST" ]; then
  echo "no checksums configured for $LLM_NAME: the node cache keeps only verified models" >&2
  exit 1
fi
dest="$root/$MANIFEST_SHA256"
# an entry counts only with its marker for this digest and prefix and a manifest that still hashes to the pin
valid() {{
  [ -f "$1/.verified" ] && [ "$(cat "$1/.verified")" = "$MANIFEST_SHA256 $MODEL_PREFIX" ] \\
    && echo "$MANIFEST_SHA256  $1/.manifest" | sha256sum --check --strict --quiet 2>/dev/null
}}
if valid "$dest"; then
  echo "node cache: $dest was verified against $MANIFEST_SHA256 on this node"
  exit 0
fi
aws s3 cp --only-show-errors "s3://$MODEL_BUCKET/$MODEL_PREFIX/$MANIFEST" "$manifest"
llm_verify_model - "$manifest" "$MANIFEST_SHA256"
work=$(mktemp -d "$root/.partial-XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
aws s3 sync --only-show-errors --no-progress --exact-timestamps --exclude "$MANIFEST" \\
  "s3://$MODEL_BUCKET/$MODEL_PREFIX/" "$work"
# the one verification script (serving/verify.py) that EC2 and Docker run too, before anything is published
llm_verify_model "$work" "$manifest" "$MANIFEST_SHA256"
cp "$manifest" "$work/.manifest"
echo "$MANIFEST_SHA256 $MODEL_PREFIX" > "$work/.verified"
chmod -R a-w "$work"
chmod u+w "$work"
if [ -e "$dest" ]; then
  # a half-made or stale entry (no valid marker): replace it; a valid one made meanwhile by a sibling pod wins
  if valid "$dest"; then
    echo "node cache: a sibling pod published $dest first"; exit 0
  fi
  chmod -R u+w "$dest" && rm -rf "$dest"
fi
mv "$work" "$dest" && chmod a-w "$dest"
trap - EXIT
echo "node cache: verified and published $dest"
"""


def claim_name(deployment: str) -> str:
    return "model-cache"


@dataclass(frozen=True)
class NodeModelCacheArgs:
    provider: k8s.Provider | None = None


class NodeModelCache(pulumi.ComponentResource):
    """Per deployment, `claim(name, namespace, size)` makes the hostPath PersistentVolume and its claim in the
    deployment's namespace (the nodes prepare CACHE_ROOT: NODE_USER_DATA)."""

    root: pulumi.Output[str]

    def __init__(self, name: str, args: NodeModelCacheArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("llm-platform:eks:NodeModelCache", name, None, opts)
        self._provider = args.provider
        self.root = pulumi.Output.from_input(CACHE_ROOT)
        self.register_outputs({"root": self.root})

    def claim(self, name: str, deployment: str, namespace: pulumi.Input[str], size_gib: int,
              opts: pulumi.ResourceOptions | None = None) -> k8s.core.v1.PersistentVolumeClaim:
        """The deployment's claim on the node cache (a hostPath PV: each node resolves its own CACHE_ROOT), made as
        children `<name>-model-cache[-volume]` of the caller's component (`opts`)."""
        kopts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(provider=self._provider))
        pv_name = f"llm-{deployment}-model-cache"
        pv = k8s.core.v1.PersistentVolume(
            f"{name}-model-cache-volume", metadata=k8s.meta.v1.ObjectMetaArgs(name=pv_name, labels={
                "llm-platform/deployment": deployment}),
            spec=k8s.core.v1.PersistentVolumeSpecArgs(
                capacity={"storage": f"{size_gib}Gi"}, access_modes=["ReadWriteMany"],
                persistent_volume_reclaim_policy="Retain", storage_class_name="llm-node-cache",
                host_path=k8s.core.v1.HostPathVolumeSourceArgs(path=CACHE_ROOT, type="Directory"),
                claim_ref=k8s.core.v1.ObjectReferenceArgs(namespace=namespace, name=claim_name(deployment))),
            opts=kopts)
        return k8s.core.v1.PersistentVolumeClaim(
            f"{name}-model-cache", metadata=k8s.meta.v1.ObjectMetaArgs(
                name=claim_name(deployment), namespace=namespace),
            spec=k8s.core.v1.PersistentVolumeClaimSpecArgs(
                access_modes=["ReadWriteMany"], storage_class_name="llm-node-cache", volume_name=pv_name,
                resources=k8s.core.v1.VolumeResourceRequirementsArgs(requests={"storage": f"{size_gib}Gi"})),
            opts=pulumi.ResourceOptions.merge(kopts, pulumi.ResourceOptions(depends_on=[pv])))

"""Regenerate the hardware columns of gpu_instances.yaml from AWS's own instance-type data.

AWS's DescribeInstanceTypes output ships inside moto (moto/ec2/resources/instance_types.json.gz).
This prints YAML rows for every NVIDIA instance in the families the planner supports; a maintainer
pastes them into gpu_instances.yaml and fills prices from the cited price source. The test
tests/test_catalog.py fails when the file and AWS's data disagree, so drift cannot go unnoticed.

    .venv/bin/python -m catalog.refresh_specs
"""
from __future__ import annotations

import gzip
import json
import os
from typing import Any

FAMILIES = ("g4dn", "g5", "g6", "gr6", "g6e", "g7", "g7e", "p4d", "p4de", "p5", "p5e", "p5en", "p6-b200", "p6-b300")


def aws_instance_types() -> dict[str, Any]:
    import moto  # dev dependency: only its data file is used

    path = os.path.join(os.path.dirname(moto.__file__), "ec2", "resources", "instance_types.json.gz")
    with gzip.open(path, "rt") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def gpu_row(info: dict[str, Any]) -> dict[str, Any]:
    gpu = info["GpuInfo"]["Gpus"][0]
    return {
        "gpu": gpu["Name"],
        "gpu_count": gpu["Count"],
        "gpu_memory_mib": gpu["MemoryInfo"]["SizeInMiB"],
        "vcpus": info["VCpuInfo"]["DefaultVCpus"],
        "memory_mib": info["MemoryInfo"]["SizeInMiB"],
        "network": info["NetworkInfo"]["NetworkPerformance"],
        "nvme_gb": info.get("InstanceStorageInfo", {}).get("TotalSizeInGB", 0),
    }


def main() -> None:
    data = aws_instance_types()
    for name in sorted(data, key=lambda n: (n.split(".")[0], data[n]["VCpuInfo"]["DefaultVCpus"])):
        if name.split(".")[0] in FAMILIES and data[name].get("GpuInfo"):
            row = gpu_row(data[name])
            print(f"  {name}: {json.dumps(row)}")


if __name__ == "__main__":
    main()

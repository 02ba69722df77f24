"""The facts the planner works from, loaded from the YAML files beside this module.

Each file carries its sources and the date they were checked; tests/test_catalog.py checks
them (instance specs against AWS's own data, parameter counts against published ones).
Pure: no Pulumi, no network. Loaded once per process.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

from .architecture import Architecture
from .checkpoint import QuantizationSpec

HERE = Path(__file__).parent
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read(name: str) -> dict[str, Any]:
    with open(HERE / name, encoding="utf-8") as fh:
        data: dict[str, Any] = yaml.load(fh, Loader=_Loader)
    return data


class _Fact(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RemoteCodePin(_Fact):
    """Code a model's config.json loads from another repository (auto_map `<repo>--<module>.<Class>`),
    pinned: staged next to the weights at this revision (serving/remote_code.py)."""
    repo: str
    revision: str = Field(pattern=r"^[0-9a-f]{40}$")
    source: str


class ModelInfo(_Fact):
    id: str
    task: Literal["generate", "embed"]
    license: str
    context_window: PositiveInt
    ollama_tag: str | None
    trust_remote_code: bool
    config_source: str
    remote_code: tuple[RemoteCodePin, ...] = ()
    published_parameters: PositiveInt
    published_parameters_source: str
    architecture: Architecture
    quantization: QuantizationSpec | None = None   # a pre-quantised checkpoint's quantization_config


class InstanceType(_Fact):
    name: str
    family: str
    gpu: str
    gpu_count: PositiveInt
    gpu_memory_mib: PositiveInt     # AWS's figure (DescribeInstanceTypes)
    vcpus: PositiveInt
    memory_mib: PositiveInt
    network: str
    nvme_gb: int
    hourly_usd: PositiveFloat
    interconnect: str = ""          # GPU-to-GPU path; empty for single-GPU sizes
    purchase: Literal["on-demand", "capacity-block"] = "on-demand"
    price_region: str = ""          # set when the price is not the catalog's region
    price_source: str = ""          # set when the price is not from the catalog-wide source

    @property
    def gpu_memory_gib(self) -> float:
        return self.gpu_memory_mib / 1024


class Gpu(_Fact):
    name: str
    aws_name: str                   # GpuInfo.Gpus[].Name in DescribeInstanceTypes
    aws_memory_mib: PositiveInt     # GpuInfo.Gpus[].MemoryInfo.SizeInMiB
    cuda_total_mib: PositiveInt     # what CUDA reports as total: the base of gpu_memory_utilization
    estimated: bool = False
    compute_capability: float
    memory_bandwidth_gbps: PositiveFloat | None = None
    bf16_dense_tflops: PositiveFloat | None = None
    fp8_dense_tflops: PositiveFloat | None = None
    fp16_dense_tflops: PositiveFloat | None = None   # only where there is no BF16 (T4)
    tensor_source: Literal["datasheet", "measured", "derived", "estimated"] = "datasheet"
    pcie_gbps: PositiveFloat | None = None           # one direction of the x16 link

    @property
    def memory_gib(self) -> float:
        return self.cuda_total_mib / 1024

    @property
    def tensor_16bit_tflops(self) -> float | None:
        """Dense 16-bit matrix throughput: BF16 where the GPU has it, else FP16."""
        return self.bf16_dense_tflops or self.fp16_dense_tflops


class Precision(_Fact):
    name: str
    kind: Literal["float", "fp8", "int4_group", "gguf"]
    runtimes: tuple[str, ...]
    min_compute_capability: float
    bits: int | None = None
    default: str | None = None      # gguf: the file type's base GGML type
    group_size: int | None = None
    scale_bits: int = 0
    zero_bits: int = 0
    index_bits: int = 0


class KvDtype(_Fact):
    name: str
    bytes: PositiveFloat
    runtimes: tuple[str, ...]


class Communication(_Fact):
    latency_us: PositiveFloat
    bandwidth_fraction: PositiveFloat


class PerformanceCalibration(_Fact):
    """catalog/performance.yaml: achievable fractions and communication costs (each cited there)."""
    memory_fraction: PositiveFloat
    step_overhead_ms: float = Field(ge=0)
    per_sequence_us: float = Field(0.0, ge=0)          # step time that grows with the batch (scheduler, sampler)
    attention_fraction: PositiveFloat | None = None  # bandwidth fraction of paged-attention KV reads
    attention_half_context: float = Field(0.0, ge=0)    # context at which paged attention reaches half of it
    decode_compute_fraction: PositiveFloat | None = None  # tensor-core fraction of skinny decode GEMMs
    compute_fraction: PositiveFloat
    nvlink: Communication
    pcie: Communication
    pipeline_hop_us: float = Field(ge=0)
    checked: str


class Catalog(_Fact):
    models: dict[str, ModelInfo]
    instances: dict[str, InstanceType]
    gpus: dict[str, Gpu]
    precisions: dict[str, Precision]
    kv_dtypes: dict[str, KvDtype]
    ggml_bytes_per_block: dict[str, tuple[int, int]] = Field(description="type -> (block, bytes)")
    prices_as_of: str
    prices_region: str
    prices_source: str
    images: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                              description="catalog/images.yaml: pinned container images")
    image_upstreams: dict[str, Any] = Field(default_factory=dict)
    performance: PerformanceCalibration | None = None

    def ggml_block(self, t: str) -> int:
        return self.ggml_bytes_per_block[t][0]

    def gpu_of(self, instance: InstanceType) -> Gpu:
        for gpu in self.gpus.values():
            if gpu.aws_name == instance.gpu and gpu.aws_memory_mib == instance.gpu_memory_mib:
                return gpu
        raise KeyError(f"no GPU facts for {instance.gpu} with {instance.gpu_memory_mib} MiB ({instance.name})")


def _models() -> dict[str, ModelInfo]:
    raw = _read("models.yaml")["models"]
    out = {}
    for mid, entry in raw.items():
        arch = dict(entry["architecture"], task=entry["task"])
        out[mid] = ModelInfo(id=mid, **{**entry, "architecture": Architecture(**arch)})
    return out


@lru_cache(maxsize=1)
def load() -> Catalog:
    inst = _read("gpu_instances.yaml")
    gpus = _read("gpus.yaml")
    quant = _read("quantization.yaml")
    imgs = _read("images.yaml")
    return Catalog(
        images=imgs["images"], image_upstreams=imgs["upstreams"],
        models=_models(),
        instances={n: InstanceType(name=n, family=n.split(".")[0], **row) for n, row in inst["instances"].items()},
        gpus={n: Gpu(name=n, **row) for n, row in gpus["gpus"].items()},
        precisions={n: Precision(name=n, **row) for n, row in quant["precisions"].items()},
        kv_dtypes={n: KvDtype(name=n, **row) for n, row in quant["kv_cache_dtypes"].items()},
        ggml_bytes_per_block={n: (r["block"], r["bytes"]) for n, r in quant["ggml_types"].items()},
        prices_as_of=str(inst["prices"]["as_of"]),
        prices_region=inst["prices"]["region"],
        prices_source=inst["prices"]["source"],
        performance=_performance(),
    )


def _performance() -> PerformanceCalibration:
    raw = _read("performance.yaml")
    return PerformanceCalibration(checked=str(raw["checked"]), **raw["decode"], **raw["prefill"],
                                  **raw["communication"])

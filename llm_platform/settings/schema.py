"""The stack configuration (namespace `llm-platform:`), as a strict pydantic model.

Every key, its default and its meaning is documented here and in the README's config
reference. Cross-field rules are written as field validators that read the fields declared
before them (`info.data`) and the validation context (environment, catalog, names seen), so
that one broken key never hides the errors of another: all problems are reported at once.
"""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from llm_platform.catalog import hf_config
from llm_platform.catalog.architecture import Architecture
from llm_platform.catalog.checkpoint import QuantizationSpec

if TYPE_CHECKING:
    from llm_platform.catalog import Catalog, ModelInfo

DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
FLOATING_REFS = {"main", "master", "latest", "head", "dev", "stable"}
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                      2192, 2557, 2922, 3288, 3653)   # the values CloudWatch Logs accepts


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def at(key: str, message: str) -> ValueError:
    """An error that belongs to sibling key `key` (the validator runs on another field)."""
    return ValueError(f"@{key} {message}")


def _env(info: ValidationInfo) -> str | None:
    return (info.context or {}).get("environment")


def _catalog(info: ValidationInfo) -> Catalog:
    return cast("Catalog", (info.context or {})["catalog"])


def _cidr(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a CIDR block ({exc}); write it like 10.20.0.0/16") from None


class Checksums(_Strict):
    """Where the model's SHA-256 manifest lives and the digest of the manifest itself.

    The instance verifies the manifest against `sha256` before trusting any line of it, then
    runs `sha256sum -c` over the weights; any mismatch keeps the server from starting.
    """
    manifest: str = Field(min_length=1, description="the manifest's key under the model store prefix, e.g. SHA256SUMS")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the manifest file, 64 lowercase hex digits")


class Provenance(_Strict):
    source: str = Field(min_length=1, description="where the weights came from (repository URL)")
    license: str = Field(min_length=1, description="the license the weights are used under")
    approved_by: str = Field(min_length=1, description="who approved this model for use")
    review_status: Literal["approved", "pending", "rejected"] = Field(description="the security review's outcome")


class Autoscaling(_Strict):
    min: PositiveInt = Field(description="instances (replicas) always running")
    max: PositiveInt = Field(description="upper bound for scale-out")

    @field_validator("max")
    @classmethod
    def _max_ge_min(cls, v: int, info: ValidationInfo) -> int:
        if "min" in info.data and v < info.data["min"]:
            raise ValueError(f"max ({v}) is below min ({info.data['min']}): raise max or lower min")
        return v


class Load(_Strict):
    """The traffic a model must serve, for capacity planning (sizing/performance.py).

    With a load, the planner picks the decode batch that meets the latency targets, sets replicas to
    what the load needs (at least the HA minimum) and autoscaling bounds around it.
    """
    requests_per_second: float = Field(gt=0, le=1_000_000, description="sustained requests per second, all "
                                       "clients together (at peak)")
    prompt_tokens: PositiveInt = Field(description="typical prompt length in tokens")
    output_tokens: PositiveInt | None = Field(None, description="typical completion length in tokens; "
                                                 "required for generation models, absent for embedders")
    ttft_p99_seconds: float | None = Field(None, gt=0, le=600, description="time-to-first-token target (p99)")
    tpot_p99_seconds: float | None = Field(None, gt=0, le=60, description="time-per-output-token target (p99); "
                                              "generation models only")


class Reservations(_Strict):
    """Reserved capacity the model's instances launch into first (or only): On-Demand Capacity Reservations, or
    Capacity Blocks for ML (a reservation of type capacity-block, launched with market type capacity-block)."""
    ids: list[str] = Field(min_length=1, description="reservation ids, cr- followed by 17 hex digits")
    preference: Literal["capacity-reservations-first", "capacity-reservations-only"] = Field(
        "capacity-reservations-first", description="first: reservations, then on-demand; only: nothing else")
    capacity_block: bool = Field(False, description="the ids are Capacity Blocks for ML: instances launch only "
                                 "into them (market type capacity-block), so the group uses no fallback types")

    @field_validator("ids")
    @classmethod
    def _ids(cls, v: list[str]) -> list[str]:
        bad = [i for i in v if not re.fullmatch(r"cr-[0-9a-f]{17}", i)]
        if bad:
            raise ValueError(f"{bad} are not capacity reservation ids (cr- and 17 hex digits, as "
                             "`aws ec2 describe-capacity-reservations` prints them)")
        if len(set(v)) != len(v):
            raise ValueError("reservation ids repeat: list each once")
        return v

    @field_validator("capacity_block")
    @classmethod
    def _block(cls, v: bool, info: ValidationInfo) -> bool:
        if v and info.data.get("preference") != "capacity-reservations-only":
            raise at("preference", "Capacity Blocks are used only through their reservation: set preference "
                                   "to capacity-reservations-only")
        if v and len(info.data.get("ids") or []) > 1:
            raise at("ids", "a launch template targets one Capacity Block: list one id (one group per block)")
        return v


class Capacity(_Strict):
    """How a model's group gets GPUs when its first choice is scarce, and how fast a new replica serves."""
    fallbacks: bool = Field(True, description="let the group launch the plan's checked fallback types when the "
                            "chosen type has no capacity")
    max_fallbacks: int = Field(3, ge=1, le=10, description="at most this many fallback types, cheapest first")
    warm_pool: bool | None = Field(None, validate_default=True, description="ec2: keep Stopped instances with "
                                      "the image pulled and the weights verified (default: on in prod)")
    reservations: Reservations | None = Field(None, description="ec2: capacity reservations to launch into")
    model_snapshot_id: str | None = Field(None, pattern=r"^snap-[0-9a-f]{8,17}$",
                                             description="ec2: an encrypted EBS snapshot of the verified model "
                                             "directory (with its SHA256SUMS) that new instances attach")
    fast_snapshot_restore: bool = Field(False, description="ec2: enable EBS Fast Snapshot Restore for "
                                        "model_snapshot_id in the stack's AZs (billed per AZ-hour) so restored "
                                        "volumes read at full speed at once")

    @field_validator("warm_pool")
    @classmethod
    def _warm(cls, v: bool | None, info: ValidationInfo) -> bool:
        platform = (info.context or {}).get("platform", "ec2")
        if v and platform != "ec2":
            raise ValueError(f"warm pools are an EC2 Auto Scaling feature (platform is {platform}): remove "
                             "warm_pool (on eks the node-local model cache serves restarts)")
        return (_env(info) == "prod" and platform == "ec2") if v is None else v

    @field_validator("fast_snapshot_restore")
    @classmethod
    def _fsr(cls, v: bool, info: ValidationInfo) -> bool:
        if v and not info.data.get("model_snapshot_id"):
            raise ValueError("Fast Snapshot Restore applies to model_snapshot_id, which is not set: "
                             "set it or remove this")
        return v

    @field_validator("reservations", "model_snapshot_id")
    @classmethod
    def _ec2_only(cls, v: object, info: ValidationInfo) -> object:
        platform = (info.context or {}).get("platform", "ec2")
        if v is not None and platform != "ec2":
            raise ValueError(f"applies to platform ec2 only (platform is {platform}): remove it")
        return v


class ModelSpec(_Strict):
    """One model deployment: what to serve, how, and how much of it."""

    name: str = Field(pattern=DNS_LABEL, description="served model name and resource name: lowercase letters, "
                      "digits and '-', at most 63 characters, e.g. llama-70b")
    architecture_file: str | None = Field(None, min_length=1, description="path to the model's config.json "
                                             "(or its directory), relative to the stack file")
    architecture: Architecture | None = Field(None, validate_default=True, description="for a model the "
                                                 "registry lacks: its config.json verbatim, or our fields of it")
    model: str = Field(min_length=1, description="Hugging Face repository id, e.g. meta-llama/Llama-3.1-8B-Instruct")
    runtime: Literal["vllm", "ollama", "tgi"] = Field("vllm", validate_default=True, description="inference server")
    precision: str | None = Field(None, validate_default=True, description="weight format: bf16, fp16, fp8, awq, "
                                     "gptq, or a GGUF type for ollama (q4_k_m, q5_k_m, q6_k, q8_0, ...)")
    kv_cache_dtype: str = Field("auto", validate_default=True, description="auto (the model's 16-bit type), fp8 "
                                "(vllm, tgi) or q8_0/q4_0 (ollama)")
    max_model_len: PositiveInt | None = Field(None, validate_default=True, description="longest prompt + "
                                                 "completion in tokens; default min(8192, the model's context window)")
    concurrency: PositiveInt = Field(8, le=4096,
                                     description="sequences at full max_model_len the KV cache holds at once")
    max_num_batched_tokens: PositiveInt = Field(8192, ge=256, le=262144, description="tokens per prefill chunk")
    gpu_memory_utilization: float = Field(0.90, gt=0.5, le=0.95, description="fraction of each GPU's memory the "
                                          "runtime may use; the guide allows at most 0.95")
    load: Load | None = Field(None, validate_default=True, description="expected traffic and latency "
                                 "targets; replicas and autoscaling then follow from it")
    replicas: PositiveInt | None = Field(None, description="fixed number of replicas (default 1); prod needs >= 2")
    autoscaling: Autoscaling | None = Field(None, validate_default=True, description="{min, max} instead of replicas")
    instance_type: str | None = Field(None, description="force an instance type; the plan checks that it fits")
    revision: str | None = Field(None, validate_default=True, description="pinned revision: a 40-hex Hugging Face "
                                    "commit or an sha256:<64 hex> digest; required in prod")
    checksums: Checksums | None = Field(None, validate_default=True, description="SHA-256 manifest; required in prod")
    provenance: Provenance | None = Field(None, validate_default=True,
                                          description="origin and approval; required in prod")
    trust_remote_code: bool = Field(False, description="let the runtime run the repository's Python code")
    quantization: QuantizationSpec | None = Field(None, validate_default=True, description="a pre-quantised "
                                                     "checkpoint's quantization_config (quant_method, ignored_layers"
                                                     " / modules_to_not_convert, weight_block_size, group_size): "
                                                     "weights are sized tensor by tensor from it")
    tensor_parallel_size: int | None = Field(None, description="force the tensor-parallel size (1, 2, 4 or 8); "
                                                "the plan checks that it fits, like instance_type")
    capacity: Capacity | None = Field(None, validate_default=True, description="fallback types, warm pool, "
                                         "reservations and model snapshot (defaults: fallbacks on, warm pool in prod)")

    # what the model's config.json said beyond the Architecture (torch_dtype, quantization_config, auto_map)
    _checkpoint: hf_config.HfModel | None = PrivateAttr(None)

    @property
    def checkpoint(self) -> hf_config.HfModel | None:
        """The parsed config.json when the architecture came from one: its quantization_config (method, bits,
        group size, weight_block_size, modules kept in 16 bit) for the quantization sizing, its auto_map."""
        return self._checkpoint

    @model_validator(mode="after")
    def _keep_checkpoint(self, info: ValidationInfo) -> ModelSpec:
        self._checkpoint = (info.context or {}).get("hf_model") if self.architecture is not None else None
        return self

    @field_validator("name")
    @classmethod
    def _unique(cls, v: str, info: ValidationInfo) -> str:
        seen = (info.context or {}).setdefault("names", set())
        if v in seen:
            raise ValueError(f"another model is already named {v!r}: names must be unique (they become DNS names)")
        seen.add(v)
        return v

    @field_validator("architecture", mode="before")
    @classmethod
    def _from_hf(cls, v: object, info: ValidationInfo) -> object:
        """A config.json (pasted, or architecture_file) becomes an Architecture; the checkpoint's own
        precision and quantization are kept in the validation context for the precision field."""
        ctx = info.context if info.context is not None else {}
        ctx["hf_model"] = None
        path = info.data.get("architecture_file")
        if path is not None:
            if v is not None:
                raise ValueError("give the architecture either inline or as architecture_file, not both: "
                                 "remove one")
            full = Path(ctx.get("base_dir") or Path.cwd()) / path
            try:
                v = hf_config.load_file(full)
            except hf_config.HfConfigError as exc:
                raise at("architecture_file", str(exc)) from None
        if not hf_config.is_hf_config(v):
            return v
        try:
            model = hf_config.from_config(v, source=str(path or "the pasted config.json"))
        except hf_config.HfConfigError as exc:
            raise ValueError(f"{'config.json' if path else 'architecture'}.{exc}" if exc.key else str(exc)) from None
        ctx["hf_model"] = model
        return model.architecture

    @field_validator("model")
    @classmethod
    def _known(cls, v: str, info: ValidationInfo) -> str:
        models = _catalog(info).models
        # an architecture that failed validation is absent from info.data and has its own error already
        if v not in models and "architecture" in info.data and info.data["architecture"] is None:
            raise ValueError(f"{v!r} is not in the model registry and the entry has no `architecture`: paste its "
                             "config.json under `architecture`, or set `architecture_file: path/to/config.json` "
                             f"(`llm-platform model inspect` shows what it means), or use a registry model: "
                             f"{', '.join(sorted(models))}")
        return v

    @field_validator("runtime")
    @classmethod
    def _runtime_image(cls, v: str, info: ValidationInfo) -> str:
        image = _catalog(info).images.get(v, {})
        overridden = v in (info.context or {}).get("image_overrides", set())
        if not image.get("available", True) and not overridden:
            raise ValueError(f"{v} has no pinned image: {' '.join(image['reason'].split())}")
        return v

    @field_validator("precision")
    @classmethod
    def _precision(cls, v: str | None, info: ValidationInfo) -> str | None:
        runtime = info.data.get("runtime")
        info_model = _registry_entry(info)
        hf: hf_config.HfModel | None = (info.context or {}).get("hf_model") \
            if info.data.get("architecture") is not None else None
        if hf is not None and hf.quantization is not None and runtime != "ollama" and v is not None \
                and v != hf.precision and _catalog(info).precisions[hf.precision].kind != "float":
            raise ValueError(f"{hf.name} is a pre-quantised checkpoint (quantization_config.quant_method "
                             f"{hf.quantization.quant_method}): the runtime serves it as {hf.precision}; "
                             f"set precision {hf.precision} or remove precision")
        if v is None and info_model is not None and info_model.quantization is not None and runtime != "ollama":
            kind = info_model.quantization.precision_kind() or "fp8"
            method = info_model.quantization.quant_method
            return "fp8" if kind == "fp8" else ("gptq" if method == "gptq" else "awq")
        if v is None:
            if hf is not None and runtime != "ollama":
                return hf.precision
            if runtime == "ollama":
                embed = info_model is not None and info_model.task == "embed"
                return "fp16" if embed else "q4_k_m"
            return "bf16"
        precisions = _catalog(info).precisions
        if v not in precisions:
            raise ValueError(f"unknown precision {v!r}: use one of {', '.join(precisions)}")
        if runtime and runtime not in precisions[v].runtimes:
            fits = [p for p, d in precisions.items() if runtime in d.runtimes]
            kind = "a GGUF type, served only by ollama" if precisions[v].kind == "gguf" else \
                f"served by {' and '.join(precisions[v].runtimes)}"
            raise ValueError(f"precision {v!r} is {kind}; with runtime {runtime} use one of {', '.join(fits)}")
        return v

    @field_validator("kv_cache_dtype")
    @classmethod
    def _kv_dtype(cls, v: str, info: ValidationInfo) -> str:
        kinds = _catalog(info).kv_dtypes
        runtime = info.data.get("runtime")
        if v not in kinds:
            raise ValueError(f"unknown kv_cache_dtype {v!r}: use one of {', '.join(kinds)}")
        if runtime and runtime not in kinds[v].runtimes:
            fits = [k for k, d in kinds.items() if runtime in d.runtimes]
            raise ValueError(f"kv_cache_dtype {v!r} is not available with {runtime}: use one of {', '.join(fits)}")
        return v

    @field_validator("max_model_len")
    @classmethod
    def _context(cls, v: int | None, info: ValidationInfo) -> int | None:
        window = _context_window(info)
        if window is None:
            return v
        if v is None:
            return min(8192, window)
        if v > window:
            raise ValueError(f"{v} tokens exceeds the context window of {info.data['model']} ({window} tokens): "
                             f"set max_model_len to at most {window}")
        return v

    @field_validator("max_num_batched_tokens")
    @classmethod
    def _chunk(cls, v: int, info: ValidationInfo) -> int:
        mml, entry = info.data.get("max_model_len"), _registry_entry(info)
        embed = (entry.task if entry else getattr(info.data.get("architecture"), "task", "generate")) == "embed"
        runtime = info.data.get("runtime")
        if mml and v < mml and (embed or runtime == "tgi"):
            why = "embedding models prefill a whole input at once" if embed else \
                "TGI needs --max-batch-prefill-tokens >= --max-input-tokens"
            raise ValueError(f"{v} is below max_model_len ({mml}); {why}: raise it to at least {mml}")
        return v

    @field_validator("load")
    @classmethod
    def _load(cls, v: Load | None, info: ValidationInfo) -> Load | None:
        if v is None:
            return v
        entry = _registry_entry(info)
        embed = (entry.task if entry else getattr(info.data.get("architecture"), "task", "generate")) == "embed"
        if embed:
            if v.output_tokens is not None:
                raise at("load.output_tokens", "an embedding model returns vectors, not tokens: remove output_tokens")
            if v.tpot_p99_seconds is not None:
                raise at("load.tpot_p99_seconds", "an embedding model has no output tokens to pace: remove "
                                                  "tpot_p99_seconds (ttft_p99_seconds bounds its latency)")
        elif v.output_tokens is None:
            raise at("load.output_tokens", "a generation model needs the typical completion length: add output_tokens")
        mml = info.data.get("max_model_len")
        total = v.prompt_tokens + (v.output_tokens or 0)
        if mml and total > mml:
            what = "prompt_tokens + output_tokens" if v.output_tokens else "prompt_tokens"
            raise at("load.prompt_tokens", f"{what} = {total} exceeds max_model_len ({mml}): a request that long "
                                           f"is refused; shorten them or raise max_model_len to at least {total}")
        return v

    @field_validator("autoscaling")
    @classmethod
    def _scale(cls, v: Autoscaling | None, info: ValidationInfo) -> Autoscaling | None:
        replicas = info.data.get("replicas")
        if v is not None and replicas is not None:
            raise ValueError("Only one of replicas and autoscaling can be specified: remove one")
        if v is None and replicas is None and info.data.get("load") is not None:
            return v        # the planner derives replicas from the load, never below the HA minimum
        lowest = v.min if v else (replicas or 1)
        if _env(info) == "prod" and lowest < 2:
            key = "autoscaling.min" if v else "replicas"
            raise at(key, f"prod needs at least 2 instances of every model for availability (got {lowest}): "
                          f"set {key} to 2 or more")
        return v

    @field_validator("instance_type")
    @classmethod
    def _instance(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and v not in _catalog(info).instances:
            raise ValueError(f"{v!r} is not in the GPU instance catalog: run `python plan.py --catalog` for the list")
        return v

    @field_validator("revision")
    @classmethod
    def _revision(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            if _env(info) == "prod":
                raise ValueError("prod models need a pinned revision (the 40-hex commit of the weights on "
                                 "Hugging Face, or an sha256: digest): add revision")
            return v
        if v.lower() in FLOATING_REFS:
            raise ValueError(f"{v!r} is a moving reference: pin the 40-hex commit id instead")
        if not re.fullmatch(r"[0-9a-f]{40}|sha256:[0-9a-f]{64}", v):
            raise ValueError(f"{v!r} is not a pinned revision: use a 40-hex commit id or sha256:<64 hex>")
        return v

    @field_validator("checksums")
    @classmethod
    def _checksums(cls, v: Checksums | None, info: ValidationInfo) -> Checksums | None:
        if v is None and _env(info) == "prod":
            raise ValueError("prod models need a SHA-256 manifest: add checksums {manifest, sha256}")
        return v

    @field_validator("provenance")
    @classmethod
    def _provenance(cls, v: Provenance | None, info: ValidationInfo) -> Provenance | None:
        if _env(info) == "prod":
            if v is None:
                raise ValueError("prod models need provenance {source, license, approved_by, review_status}")
            if v.review_status != "approved":
                raise ValueError(f"review_status is {v.review_status!r}: prod serves only approved models")
        return v

    @field_validator("trust_remote_code")
    @classmethod
    def _remote_code(cls, v: bool, info: ValidationInfo) -> bool:
        entry = _registry_entry(info)
        if v and entry is not None and not entry.trust_remote_code:
            raise ValueError(f"{entry.id} loads without remote code: remove trust_remote_code "
                             "(it lets the repository run Python on the server)")
        prov = info.data.get("provenance")
        if v and entry is None and (prov is None or prov.review_status != "approved"):
            raise ValueError("remote code from a model outside the registry runs only after review: "
                             "add provenance with review_status approved, or remove trust_remote_code")
        return v

    @field_validator("capacity")
    @classmethod
    def _capacity(cls, v: Capacity | None, info: ValidationInfo) -> Capacity:
        return v if v is not None else Capacity.model_validate({}, context=info.context)



    @field_validator("quantization")
    @classmethod
    def _quantization(cls, v: QuantizationSpec | None, info: ValidationInfo) -> QuantizationSpec | None:
        if v is None:
            v = _checkpoint_quantization(info)
        entry = _registry_entry(info)
        q = v if v is not None else (entry.quantization if entry is not None else None)
        precision = info.data.get("precision")
        if q is None or precision is None:
            return v
        kind, want = _catalog(info).precisions[precision].kind, q.precision_kind()
        model = info.data.get("model")
        if (want is not None and kind != want) or kind in ("float", "gguf"):
            fits = [p for p, d in _catalog(info).precisions.items()
                    if (d.kind == want if want else d.kind in ("fp8", "int4_group"))
                    and info.data.get("runtime") in d.runtimes]
            raise ValueError(f"{model} is a {q.quant_method} checkpoint: precision {precision!r} would not load it; "
                             f"use precision {' or '.join(fits) or 'fp8'}")
        return v

    @field_validator("tensor_parallel_size")
    @classmethod
    def _tensor_parallel(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v is None:
            return v
        model = info.data.get("model")
        if info.data.get("runtime") == "ollama":
            raise ValueError(f"{model}: ollama has no tensor parallelism (it splits layers over GPUs): "
                             "remove tensor_parallel_size")
        if v not in (1, 2, 4, 8):
            raise ValueError(f"{model}: tensor_parallel_size {v} is not one of 1, 2, 4, 8 (the GPU counts of one node)")
        entry = _registry_entry(info)
        arch = info.data.get("architecture") or (entry.architecture if entry is not None else None)
        if arch is not None:
            if arch.num_attention_heads % v:
                raise ValueError(f"{model}: tensor_parallel_size {v} does not divide its {arch.num_attention_heads} "
                                 "attention heads: vLLM refuses it; use a divisor")
            kv = arch.kv_heads
            if kv % v and v % kv:
                raise ValueError(f"{model}: tensor_parallel_size {v} neither divides its {kv} KV heads nor is a "
                                 "multiple of them: vLLM refuses it")
        itype = info.data.get("instance_type")
        inst = _catalog(info).instances.get(itype) if itype else None
        if inst is not None and inst.gpu_count < v:
            raise ValueError(f"{model}: tensor_parallel_size {v} needs {v} GPUs on one node; {itype} has "
                             f"{inst.gpu_count}: choose an instance type with {v} or more GPUs")
        return v


def _checkpoint_quantization(info: ValidationInfo) -> QuantizationSpec | None:
    """The quantization_config of a pasted config.json, when its format is one the sizing weighs tensor by
    tensor and the runtime serves it quantized (formats the catalog does not size stay 16-bit upper bounds)."""
    hf: hf_config.HfModel | None = (info.context or {}).get("hf_model") \
        if info.data.get("architecture") is not None else None
    precision = info.data.get("precision")
    if hf is None or hf.quantization is None or info.data.get("runtime") == "ollama" or precision is None \
            or _catalog(info).precisions[precision].kind in ("float", "gguf"):
        return None
    try:
        return QuantizationSpec.from_quantization_config(hf.quantization.raw, source=hf.name)
    except ValueError:          # pydantic's ValidationError is one: a method the layouts do not know
        return None


def _registry_entry(info: ValidationInfo) -> ModelInfo | None:
    model = info.data.get("model")
    return _catalog(info).models.get(model) if model and info.data.get("architecture") is None else None


def _context_window(info: ValidationInfo) -> int | None:
    arch: Architecture | None = info.data.get("architecture")
    if arch is not None:
        return arch.max_position_embeddings
    entry = _registry_entry(info)
    return entry.context_window if entry else None


class NetworkSpec(_Strict):
    """The private network the inference fleet lives in."""
    cidr: str = Field("10.40.0.0/16", description="VPC CIDR, private (RFC 1918), /16 to /22")
    availability_zones: PositiveInt | list[str] = Field(
        2, validate_default=True, description="how many AZs (a number) or which ones (names); prod needs >= 2")
    allowed_client_cidrs: list[str] = Field(
        min_length=1, description="CIDRs allowed to call the API: your application networks, outside the VPC")
    monitoring_cidrs: list[str] = Field(default_factory=list, description="CIDRs allowed to scrape /metrics")
    egress: Literal["none", "nat"] = Field("none", validate_default=True,
                                           description="none: air-gapped, VPC endpoints only; nat: NAT gateways")

    @field_validator("egress")
    @classmethod
    def _egress(cls, v: str, info: ValidationInfo) -> str:
        if v == "none" and (info.context or {}).get("platform") == "eks":
            raise ValueError("platform eks installs add-ons whose images come from public registries (the NVIDIA "
                             "device plugin from nvcr.io, LeaderWorkerSet from registry.k8s.io, KEDA from ghcr.io), "
                             "which an air-gapped VPC cannot reach: set egress to nat")
        return v

    @field_validator("cidr")
    @classmethod
    def _vpc(cls, v: str) -> str:
        net = _cidr(v)
        if net.version != 4 or not net.is_private or not 16 <= net.prefixlen <= 22:
            raise ValueError(f"{v} must be a private IPv4 block (10/8, 172.16/12, 192.168/16) from /16 to /22")
        return v

    @field_validator("availability_zones")
    @classmethod
    def _azs(cls, v: int | list[str], info: ValidationInfo) -> int | list[str]:
        count = v if isinstance(v, int) else len(v)
        if isinstance(v, list) and len(set(v)) != len(v):
            raise ValueError("availability zone names repeat: list each once")
        if not 1 <= count <= 6:
            raise ValueError(f"{count} availability zones: use 1 to 6")
        if _env(info) == "prod" and count < 2:
            raise ValueError("prod spreads replicas over at least 2 availability zones: set 2 or more")
        platform = (info.context or {}).get("platform")
        if platform in ("ec2", "eks") and count < 2:
            raise ValueError(f"platform {platform} puts an internal load balancer in front, and AWS load balancers "
                             "need subnets in at least 2 availability zones: set 2 or more")
        return v

    @field_validator("allowed_client_cidrs", "monitoring_cidrs")
    @classmethod
    def _outside_vpc(cls, v: list[str], info: ValidationInfo) -> list[str]:
        vpc = _cidr(info.data["cidr"]) if "cidr" in info.data else None
        problems = []
        for i, item in enumerate(v):
            try:
                net = _cidr(item)
            except ValueError as exc:
                problems.append(f"[{i}] {exc}")
                continue
            if net.prefixlen == 0:
                problems.append(f"[{i}] {item} admits the whole internet: list your networks instead")
            elif vpc is not None and net.version == vpc.version and net.overlaps(vpc):
                problems.append(f"[{i}] {item} overlaps the VPC CIDR {vpc}: "
                                "clients and scrapers must be outside the VPC")
        if problems:
            raise ValueError("; ".join(problems))
        return v


class ApiSpec(_Strict):
    """The API the load balancer serves."""
    domain: str = Field("llm.internal", pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
                        description="DNS name clients use, in a private hosted zone")
    certificate_arn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+$",
                                           description="ACM certificate for the domain; default: an internal CA")
    max_prompt_bytes: PositiveInt = Field(131072, ge=1024, le=10485760, description="largest request body accepted")
    max_tokens: PositiveInt = Field(4096, le=131072, description="largest completion a request may ask for")
    rate_limit_per_5min: PositiveInt = Field(600, ge=10, le=2000000000,
                                             description="requests per client IP per 5 minutes (WAF rate-based rule)")
    clients: list[str] = Field(min_length=1, description="API client names; each gets its own generated key")

    @field_validator("clients")
    @classmethod
    def _clients(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not re.fullmatch(DNS_LABEL, c)]
        if bad:
            raise ValueError(f"client names {bad} must be lowercase letters, digits and '-'")
        if len(set(v)) != len(v):
            raise ValueError("client names repeat: each client is listed once")
        return v


class MonitoringSpec(_Strict):
    alarm_email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", description="alarm recipient")
    log_retention_days: int = Field(90, description="CloudWatch Logs retention; the guide's default is 90")
    latency_p99_seconds: float = Field(5.0, gt=0, le=600, description="p99 latency alarm threshold")
    gpu_memory_alarm_percent: float = Field(95.0, ge=50, le=100, description="GPU memory alarm threshold")

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, v: int) -> int:
        if v not in LOG_RETENTION_DAYS:
            raise ValueError(f"CloudWatch Logs accepts only {', '.join(map(str, LOG_RETENTION_DAYS))} days")
        return v


class PricingSpec(_Strict):
    hourly_usd: dict[str, float] = Field(default_factory=dict,
                                         description="price per instance type, overriding the catalog")
    discount_percent: float = Field(0.0, ge=0, lt=100,
                                    description="applied to every catalog price (EDP, savings plans)")

    @field_validator("hourly_usd")
    @classmethod
    def _known_types(cls, v: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        unknown = [k for k in v if k not in _catalog(info).instances]
        if unknown:
            raise ValueError(f"{unknown} are not in the GPU instance catalog: run `python plan.py --catalog`")
        if any(p <= 0 for p in v.values()):
            raise ValueError("prices must be positive")
        return v


IMAGE_REF = r"^[a-z0-9][a-z0-9.\-/_:]*@sha256:[0-9a-f]{64}$"


class ImagesSpec(_Strict):
    """Container images: pull-through cache credentials and per-image overrides (pinned by digest)."""
    docker_hub_credential_arn: str | None = Field(
        None, pattern=r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:ecr-pullthroughcache/.+$",
        description="Secrets Manager secret (name starting ecr-pullthroughcache/, keys username and "
                    "accessToken) for the ECR pull-through cache of Docker Hub images; or give "
                    "docker_hub_username and the secret config dockerHubToken")
    docker_hub_username: str | None = Field(
        None, pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$",
        description="Docker Hub user of the read-only token set with `pulumi config set --secret dockerHubToken`")
    create_cache_rules: bool = Field(
        True, description="make the ECR pull-through cache rules; they are account- and region-wide, so set "
                          "false in every stack but one that shares an account and region")
    vllm: str | None = Field(None, pattern=IMAGE_REF, description="vLLM image, <repository>@sha256:<digest>")
    ollama: str | None = Field(None, pattern=IMAGE_REF, description="Ollama image, <repository>@sha256:<digest>")
    tgi: str | None = Field(None, pattern=IMAGE_REF, description="TGI image, <repository>@sha256:<digest>")
    proxy: str | None = Field(None, pattern=IMAGE_REF, description="nginx proxy image, <repository>@sha256:<digest>")


class EksSpec(_Strict):
    """platform eks: the cluster and the in-cluster services the workloads rely on."""
    kubernetes_version: str = Field("1.33", pattern=r"^1\.(2[89]|3\d)$", description="EKS Kubernetes version")
    system_instance_type: str = Field("m7i.large", pattern=r"^[a-z0-9-]+\.[a-z0-9]+$",
                                      description="instance type of the (CPU) system node group: controllers, "
                                                  "CoreDNS, the device plugin's scheduler-side pieces")
    system_nodes: PositiveInt = Field(2, le=20, description="system node group size")
    monitoring_namespace: str = Field("monitoring", pattern=DNS_LABEL,
                                      description="namespace of the Prometheus Operator (ServiceMonitor, "
                                                  "PrometheusRule); the only namespace admitted to /metrics")
    prometheus_url: str = Field("http://prometheus-operated.monitoring.svc:9090", pattern=r"^https?://[^\s]+$",
                                description="Prometheus the KEDA scaler queries for vllm:num_requests_waiting")
    queue_target: PositiveInt = Field(4, le=1000, description="waiting requests per replica before KEDA adds "
                                                              "one (the autoscaling threshold)")
    api_access_cidrs: list[str] = Field(default_factory=list, description="networks outside the VPC that may reach "
                                        "the private API endpoint (where `pulumi up` and kubectl run: VPN, CI)")
    admin_role_arns: list[str] = Field(default_factory=list, description="IAM roles given cluster-admin access "
                                       "entries (CI/CD deployers), besides the identity that creates the cluster")

    @field_validator("api_access_cidrs")
    @classmethod
    def _api_cidrs(cls, v: list[str]) -> list[str]:
        for item in v:
            net = _cidr(item)
            if net.prefixlen == 0:
                raise ValueError(f"{item} admits the whole internet to the Kubernetes API: list your networks")
        return v

    @field_validator("admin_role_arns")
    @classmethod
    def _admin_roles(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", a)]
        if bad:
            raise ValueError(f"{bad} are not IAM role ARNs (arn:aws:iam::<account>:role/<name>)")
        return v


class LocalSpec(_Strict):
    """platform docker: the workstation's GPU, which the planner sizes against instead of an instance."""
    gpu: str = Field(description="the catalog GPU closest to yours, equal or smaller in memory and compute "
                                 "capability: T4, A10G, L4, L40S, A100-40GB, A100-80GB, H100, H200, RTX-PRO-4500, "
                                 "RTX-PRO-6000, ...")
    gpu_count: PositiveInt = Field(1, le=8, description="GPUs the runtime may use")
    port: int = Field(8443, ge=1024, le=65535, description="the proxy's HTTPS port on 127.0.0.1")

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, v: str, info: ValidationInfo) -> str:
        gpus = _catalog(info).gpus
        if v not in gpus:
            raise ValueError(f"{v!r} is not a catalog GPU: use the closest of {', '.join(gpus)} "
                             "(equal or less memory, so the plan stays safe)")
        return v


class StackConfig(_Strict):
    """Everything under `llm-platform:` in Pulumi.<stack>.yaml, plus aws:region."""
    environment: Literal["dev", "staging", "prod"] = Field("dev", description="dev, staging or prod")
    platform: Literal["ec2", "eks", "docker"] = Field("ec2", description="where replicas run")
    region: str = Field("us-east-1", pattern=r"^[a-z]{2}(-gov)?-[a-z]+-\d$", description="aws:region")
    network: NetworkSpec = Field(description="{allowed_client_cidrs: [...]} at least: the private network")
    api: ApiSpec = Field(description="{clients: [...]} at least: the API and its clients")
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec, validate_default=True,
                                       description="alarms and logs; prod needs alarm_email")
    models: list[ModelSpec] = Field(min_length=1, description="the model deployments")
    pricing: PricingSpec = Field(default_factory=PricingSpec)
    images: ImagesSpec | None = Field(None, validate_default=True,
                                         description="image overrides and the Docker Hub cache credential")
    eks: EksSpec | None = Field(None, validate_default=True, description="platform eks: cluster settings")
    local: LocalSpec | None = Field(None, validate_default=True,
                                       description="platform docker: the workstation GPU to size against")
    hf_token: bool = Field(False, description="whether llm-platform:hfToken is set (as a secret)")
    docker_hub_token: bool = Field(False, description="whether llm-platform:dockerHubToken is set (as a secret)")

    @field_validator("monitoring")
    @classmethod
    def _alarm_recipient(cls, v: MonitoringSpec, info: ValidationInfo) -> MonitoringSpec:
        if _env(info) == "prod" and not v.alarm_email:
            raise at("monitoring.alarm_email", "prod alarms (GPU memory, p99 latency, unhealthy hosts, 5xx) go to an "
                                               "SNS topic that nobody receives without it: add monitoring.alarm_email "
                                               "(the on-call address)")
        return v

    @field_validator("images")
    @classmethod
    def _images(cls, v: ImagesSpec | None, info: ValidationInfo) -> ImagesSpec:
        return v or ImagesSpec()

    @field_validator("eks")
    @classmethod
    def _eks(cls, v: EksSpec | None, info: ValidationInfo) -> EksSpec | None:
        platform = info.data.get("platform")
        if v is not None and platform != "eks":
            raise ValueError(f"the eks block applies to platform eks only (platform is {platform}): remove it")
        return v if v is not None or platform != "eks" else EksSpec()

    @field_validator("local")
    @classmethod
    def _local(cls, v: LocalSpec | None, info: ValidationInfo) -> LocalSpec | None:
        platform = info.data.get("platform")
        if v is not None and platform != "docker":
            raise ValueError(f"the local block applies to platform docker only (platform is {platform}): remove it")
        if v is None and platform == "docker":
            raise ValueError("platform docker sizes models against your workstation's GPU: add "
                             "local: {gpu: <the closest catalog GPU, e.g. L4>, gpu_count: 1}")
        return v

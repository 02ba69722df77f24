"""How a pre-quantised checkpoint stores its tensors: the parts of its `quantization_config` that size it.

A fact about a checkpoint, so it lives with the catalog (registry entries name it; sizing reads it).

A precision name (fp8, awq, gptq) says what most linear layers are; a checkpoint says exactly which.
Real FP8 checkpoints keep more than the LM head in 16 bit: e.g. the `ignored_layers` /
`modules_to_not_convert` / `ignore` list of llm-compressor, ModelOpt or FBGEMM exports often names
every attention projection, the first and last blocks, or the MoE routers. Such a checkpoint weighs
~20 % more than "every linear at one byte", and sizing that ignores it under-estimates (an OOM at
start). `QuantLayout` carries those facts; sizing/memory.py weighs every tensor by it.

Module names follow the Hugging Face checkpoints of the Llama/Qwen/Mistral/DeepSeek families:
`model.embed_tokens`, `model.layers.{i}.self_attn.{q,k,v,o}_proj` (MLA: `q_a_proj`, `q_b_proj`,
`kv_a_proj_with_mqa`, `kv_b_proj`), `model.layers.{i}.mlp.{gate,up,down}_proj`, routed experts
`model.layers.{i}.mlp.experts.{e}.{gate,up,down}_proj` (Mixtral's `block_sparse_moe.experts.{e}.w1/w3/w2`
match too), shared experts `mlp.shared_experts.*`, router `mlp.gate`, and `lm_head`.

A pattern matches a module the way the runtimes match them:
  * `re:<regex>`: compressed-tensors' convention, a regular expression searched in the name;
  * a pattern with `*` or `?`: a shell glob over the whole name (ModelOpt's `exclude_modules`);
  * otherwise a dotted name: the module itself or anything inside it (`model.layers.0` skips the
    whole first block; `lm_head` the head; `self_attn` every attention block, as vLLM's substring
    test for `modules_to_not_convert` does).
Pure: no I/O.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

METHODS = ("fp8", "compressed-tensors", "modelopt", "fbgemm_fp8", "awq", "gptq")


@dataclass(frozen=True)
class QuantLayout:
    """The sizing-relevant part of a checkpoint's quantization_config (hashable: sizing caches on it)."""
    quant_method: str
    # modules kept in 16 bit besides what the precision always keeps (embeddings, norms, router, lm_head)
    modules_to_not_convert: tuple[str, ...] = ()
    # FP8 scales: one fp32 per [rows, cols] block (DeepSeek-V3, Qwen3-FP8: [128, 128]); None: see strategy
    weight_block_size: tuple[int, int] | None = None
    # FP8 without blocks: "tensor" (one fp32 scale per tensor) or "channel" (one per output row)
    scale_strategy: str = "tensor"
    # int4 group formats: quantization group along the input dimension (-1: one group per row)
    group_size: int | None = None
    # whether the checkpoint also quantizes the LM head (rare; vLLM keeps it 16 bit for fp8)
    lm_head_quantized: bool = False

    def __post_init__(self) -> None:
        if self.quant_method not in METHODS:
            raise ValueError(f"unknown quant_method {self.quant_method!r}: use one of {', '.join(METHODS)}")
        if self.scale_strategy not in ("tensor", "channel"):
            raise ValueError("scale_strategy is 'tensor' or 'channel'")
        if self.weight_block_size is not None and (len(self.weight_block_size) != 2
                                                   or min(self.weight_block_size) < 1):
            raise ValueError("weight_block_size is [rows, cols], both positive")
        for p in self.modules_to_not_convert:
            if p.startswith("re:"):
                try:
                    re.compile(p[3:])
                except re.error as exc:
                    raise ValueError(f"modules_to_not_convert pattern {p!r} is not a regular expression: "
                                     f"{exc}") from None

    def keeps_16bit(self, names: tuple[str, ...]) -> bool:
        """Whether a module known by any of `names` is excluded from quantization."""
        return any(_matches(p, n) for p in self.modules_to_not_convert for n in names)


@lru_cache(maxsize=4096)
def _regex(p: str) -> re.Pattern[str]:
    return re.compile(p)


def _matches(pattern: str, name: str) -> bool:
    if pattern.startswith("re:"):
        return _regex(pattern[3:]).search(name) is not None
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    return f".{pattern}." in f".{name}."


# ----------------------------------------------------------------------------- config form


_PRECISION_KIND = {"fp8": "fp8", "compressed-tensors": None, "modelopt": "fp8", "fbgemm_fp8": "fp8",
                   "awq": "int4_group", "gptq": "int4_group"}


class QuantizationSpec(BaseModel):
    """A checkpoint's `quantization_config`, written as config.json has it (registry entries and stack
    configs use the same keys). Every runtime's name for "keep these modules in 16 bit" is accepted:
    `ignored_layers` (vLLM fp8), `modules_to_not_convert` (AWQ, FBGEMM), `ignore` (compressed-tensors),
    `exclude_modules` (ModelOpt)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quant_method: str = Field(description="fp8, compressed-tensors, modelopt, fbgemm_fp8, awq or gptq")
    ignored_layers: tuple[str, ...] = ()
    modules_to_not_convert: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    exclude_modules: tuple[str, ...] = ()
    weight_block_size: tuple[int, int] | None = Field(None, description="FP8 [rows, cols] scale blocks")
    scale_strategy: str = Field("tensor", description="FP8 without blocks: tensor or channel scales")
    group_size: int | None = Field(None, description="int4: input channels per scale group (-1: whole row)")
    lm_head_quantized: bool = False
    source: str | None = Field(None, description="where these facts come from (the checkpoint's config.json URL)")

    @model_validator(mode="after")
    def _valid(self) -> QuantizationSpec:
        self.layout()           # QuantLayout checks method, blocks and patterns
        return self

    def layout(self) -> QuantLayout:
        keep = tuple(dict.fromkeys(self.ignored_layers + self.modules_to_not_convert + self.ignore
                                   + self.exclude_modules))
        return QuantLayout(quant_method=self.quant_method, modules_to_not_convert=keep,
                           weight_block_size=self.weight_block_size, scale_strategy=self.scale_strategy,
                           group_size=self.group_size, lm_head_quantized=self.lm_head_quantized)

    def precision_kind(self) -> str | None:
        """The precision kind (catalog/quantization.yaml) the checkpoint must be served as; None: any
        quantized kind (compressed-tensors holds FP8 and int4 schemes alike)."""
        return _PRECISION_KIND[self.quant_method]

    @classmethod
    def from_quantization_config(cls, raw: dict[str, Any], source: str | None = None) -> QuantizationSpec:
        """The sizing-relevant part of a config.json `quantization_config`, whatever else it holds
        (activation_scheme, fmt, bits, version, ...): for onboarding a checkpoint from its config.json.
        compressed-tensors nests the weight scheme in `config_groups.<group>.weights` (strategy
        tensor/channel/group/block, group_size, block_structure); vLLM's kernel names (awq_marlin,
        gptq_marlin) map to their formats."""
        method = {"awq_marlin": "awq", "gptq_marlin": "gptq"}.get(raw.get("quant_method", ""),
                                                                   raw.get("quant_method", ""))
        keep = {k: tuple(raw.get(k) or ()) for k in ("ignored_layers", "modules_to_not_convert", "ignore",
                                                      "exclude_modules")}
        block = raw.get("weight_block_size")
        strategy, group = "tensor", raw.get("group_size")
        for g in (raw.get("config_groups") or {}).values():
            w = (g or {}).get("weights") or {}
            if w.get("strategy") == "channel":
                strategy = "channel"
            elif w.get("strategy") == "group" and w.get("group_size"):
                group = w["group_size"]
            elif w.get("strategy") == "block" and w.get("block_structure"):
                block = w["block_structure"]
        return cls(quant_method=method, weight_block_size=tuple(block) if block else None,
                   scale_strategy=strategy, group_size=group, source=source, **keep)

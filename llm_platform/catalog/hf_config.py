"""A Hugging Face config.json, verbatim, turned into an Architecture.

Users paste the file they have (or point `architecture_file` at it); this module reads it the way
transformers' config classes and the pinned vLLM read it, by `model_type`:

- names differ per family (Mixtral's num_local_experts, DeepSeek's n_routed_experts, nomic_bert's
  n_layer/n_embd, Starcoder2's use_bias/norm_type) and are mapped to ours;
- what a family implies without saying is filled in (Qwen2's q/k/v biases, Gemma 2/3's four norms
  per block, Qwen3's q/k norms, gpt-oss's attention sinks and router bias), and so are the
  transformers config-class defaults for absent keys (tie_word_embeddings differs per family);
- the context window is vLLM's derived max_model_len: the smallest of the length keys, multiplied
  by the rope_scaling factor except for llama3/longrope/su scaling (yarn starts from
  original_max_position_embeddings);
- sliding windows as the pinned vLLM allocates their KV: an interleaved model (layer_types of two
  kinds, or the Gemma 2/3 and gpt-oss patterns transformers builds) windows only its
  sliding_attention layers; any other model with a sliding_window (Mistral 7B v0.1, Starcoder2,
  Phi-3) windows every layer; Qwen's window counts only with use_sliding_window;
- torch_dtype (or dtype) and quantization_config give the checkpoint's own precision.

Keys that do not change sizes (token ids, dropout, initializer_range, rope_theta...) are accepted
and ignored. An unknown model_type is one error listing the fields to write by hand.
Pure: no Pulumi, no network.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from pydantic import ValidationError

from .architecture import Architecture

Fields = dict[str, Any]    # a config.json, or the Architecture fields made from it

# transformers' config-class default for tie_word_embeddings when config.json omits it
_TIED_BY_DEFAULT = {"gemma", "gemma2", "gemma3_text", "starcoder2", "bert", "nomic_bert"}
# the length keys vLLM's _get_and_verify_max_len takes the minimum of
_LENGTH_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
                "max_sequence_length", "max_seq_length", "seq_len")
# torch dtype -> catalog precision (vLLM's dtype "auto" serves float32 checkpoints in 16 bit)
_DTYPES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float32": "bf16", "float": "bf16"}
# quantization_config.quant_method -> catalog precision, where the catalog sizes that format
_QUANT_PRECISIONS = {"fp8": "fp8", "awq": "awq", "gptq": "gptq"}

HAND_WRITTEN_FIELDS = ("num_hidden_layers, hidden_size, intermediate_size, num_attention_heads, num_key_value_heads, "
                       "head_dim, vocab_size, max_position_embeddings (and for a mixture of experts num_experts, "
                       "num_experts_per_tok, moe_intermediate_size)")


class HfConfigError(ValueError):
    """A config.json that cannot be read as an architecture; `key` is the path inside config.json."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


@dataclass(frozen=True)
class Quantization:
    """quantization_config of a pre-quantised checkpoint, as the sizing needs it."""
    quant_method: str
    bits: int | None = None
    group_size: int | None = None
    weight_block_size: tuple[int, ...] | None = None
    ignored: tuple[str, ...] = ()          # modules_to_not_convert / ignore / ignored_layers: kept 16 bit
    raw: Fields = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class HfModel:
    """What a config.json says about sizing, beyond the Architecture."""
    architecture: Architecture
    model_type: str
    name: str                              # _name_or_path or the file it came from, for messages
    torch_dtype: str | None
    precision: str                         # the checkpoint's own precision, a catalog key
    quantization: Quantization | None
    auto_map: Fields                       # remote code the repository ships (needs trust_remote_code)
    notes: tuple[str, ...] = ()


def is_hf_config(value: Any) -> TypeGuard[Fields]:
    """A mapping that is a config.json rather than our own architecture block."""
    return isinstance(value, dict) and ("model_type" in value or "architectures" in value)


def load_file(path: str | Path) -> Fields:
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise HfConfigError("", f"cannot read {p}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise HfConfigError("", f"{p} is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(data, dict):
        raise HfConfigError("", f"{p} is not a config.json (a JSON object)")
    return data


class _Reader:
    """Typed access to config keys, with errors that name the key and the model."""

    def __init__(self, cfg: Fields, model_type: str, name: str, prefix: str = ""):
        self.cfg, self.model_type, self.name, self.prefix = cfg, model_type, name, prefix
        self.notes: list[str] = []

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def has(self, key: str) -> bool:
        return self.cfg.get(key) is not None

    def num(self, *keys: str, default: int | None = None) -> int:
        for key in keys:
            value = self.cfg.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise HfConfigError(self._key(key), f"must be a non-negative whole number for {self.name} "
                                                    f"(got {value!r})")
            return value
        if default is not None:
            return default
        raise HfConfigError(self._key(keys[0]), f"required to size {self.name} (model_type {self.model_type}) "
                                                "and missing from its config.json: add it from the model's own file")

    def opt_num(self, *keys: str) -> int | None:
        return self.num(*keys, default=-1) if any(self.has(k) for k in keys) else None

    def flag(self, key: str, default: bool) -> bool:
        value = self.cfg.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise HfConfigError(self._key(key), f"must be true or false for {self.name} (got {value!r})")
        return value


def from_config(cfg: Fields, source: str = "config.json") -> HfModel:
    """Map a config.json (a dict) to an HfModel. Raises HfConfigError naming the key path."""
    if not isinstance(cfg, dict):
        raise HfConfigError("", "a config.json is a JSON object")
    name = str(cfg.get("_name_or_path") or source)
    model_type = cfg.get("model_type")
    if not isinstance(model_type, str):
        archs = cfg.get("architectures")
        raise HfConfigError("model_type", f"missing from {name}'s config.json"
                            + (f" (architectures: {archs})" if archs else "")
                            + ": add it from the model's own file, or write the architecture block by hand with "
                            + HAND_WRITTEN_FIELDS)
    mapper = _FAMILIES.get(model_type)
    if mapper is None:
        raise HfConfigError("model_type", (
            f"{model_type!r} ({name}) is not a family the platform maps from config.json (it maps "
            f"{', '.join(sorted(_FAMILIES))}): write the architecture block by hand with {HAND_WRITTEN_FIELDS}, "
            "plus mlp (gated/plain), attention_bias (none/qkv/all), norm (rmsnorm/layernorm) where they differ "
            "from Llama's"))
    r = _Reader(cfg, model_type, name)
    fields = mapper(r)
    try:
        arch = Architecture(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise HfConfigError(where, f"{name}: {first['msg'].removeprefix('Value error, ')}") from None
    dtype = cfg.get("torch_dtype") or cfg.get("dtype")
    if dtype is None and isinstance(cfg.get("text_config"), dict):
        dtype = cfg["text_config"].get("torch_dtype") or cfg["text_config"].get("dtype")
    quant = _quantization(cfg.get("quantization_config"), name)
    precision = _DTYPES.get(str(dtype), "bf16") if dtype is not None else "bf16"
    if dtype in ("float32", "float"):
        r.notes.append("torch_dtype float32: vLLM serves it in 16 bit (dtype auto), sized as bf16")
    if quant is not None:
        served = _served_precision(quant)
        if served is not None:
            precision = served
        else:
            r.notes.append(f"quantization_config ({quant.quant_method}, {quant.bits or '?'} bits) is not a format the "
                           f"catalog sizes yet: weights are sized at {precision} (an upper bound)")
    auto_map: Fields = cfg["auto_map"] if isinstance(cfg.get("auto_map"), dict) else {}
    return HfModel(architecture=arch, model_type=model_type, name=name, torch_dtype=dtype, precision=precision,
                   quantization=quant, auto_map=auto_map, notes=tuple(r.notes))


def _served_precision(q: Quantization) -> str | None:
    """The catalog precision a pre-quantised checkpoint is served as, when the catalog sizes that format."""
    method = {"awq_marlin": "awq", "gptq_marlin": "gptq", "fbgemm_fp8": "fp8", "modelopt": "fp8"}.get(
        q.quant_method, q.quant_method)
    if method == "fp8":
        return "fp8"
    if method in ("awq", "gptq"):
        return method if q.bits in (None, 4) else None        # 2/3/8-bit variants: not the catalog's 4-bit format
    if method == "compressed-tensors":
        for group in (q.raw.get("config_groups") or {}).values():
            w = (group or {}).get("weights") or {}
            if w.get("num_bits") == 8 and w.get("type") == "float":
                return "fp8"
            if w.get("num_bits") == 4 and w.get("type") == "int":
                return "awq" if w.get("group_size") == 128 else None
    return None


def _quantization(q: Any, name: str) -> Quantization | None:
    if q is None:
        return None
    if not isinstance(q, dict) or not isinstance(q.get("quant_method"), str):
        raise HfConfigError("quantization_config.quant_method", f"{name}: a pre-quantised checkpoint names its "
                                                                "quant_method (fp8, awq, gptq, mxfp4, ...)")
    block = q.get("weight_block_size")
    ignored = q.get("modules_to_not_convert") or q.get("ignored_layers") or q.get("ignore") or ()
    bits = q.get("bits") if isinstance(q.get("bits"), int) else None
    group = q.get("group_size") if isinstance(q.get("group_size"), int) else None
    return Quantization(quant_method=q["quant_method"].lower(), bits=bits, group_size=group,
                        weight_block_size=tuple(block) if isinstance(block, list) else None,
                        ignored=tuple(str(x) for x in ignored) if isinstance(ignored, list) else (), raw=dict(q))


# ----------------------------------------------------------------------------- shared pieces

def _context(r: _Reader) -> int:
    """vLLM's derived max_model_len (vllm/config/model.py _get_and_verify_max_len)."""
    lengths = [r.num(k) for k in _LENGTH_KEYS if r.has(k)]
    if not lengths:
        r.num("max_position_embeddings")          # raises: required
    window = min(lengths)
    scaling = r.cfg.get("rope_scaling") or r.cfg.get("rope_parameters")
    # vLLM does not scale Gemma 3's window again: its max_position_embeddings already includes the factor
    if isinstance(scaling, dict) and not r.model_type.startswith("gemma3"):
        kind = scaling.get("rope_type") or scaling.get("type")
        factor = scaling.get("factor")
        if kind not in (None, "default", "su", "longrope", "llama3", "mrope") and isinstance(factor, (int, float)):
            if kind == "yarn" and isinstance(scaling.get("original_max_position_embeddings"), int):
                window = scaling["original_max_position_embeddings"]
            window = int(window * factor)
    return window


def _windowed(r: _Reader, default_pattern: Callable[[int], bool] | None) -> Fields:
    """sliding_window and how many layers use it, as the pinned vLLM allocates their KV.

    vLLM (engine/arg_utils.py create_engine_config) gives every attention layer the model-level
    sliding_window unless the model is interleaved (layer_types of more than one kind), where each layer
    takes its own: so a window without layer_types (Mistral 7B v0.1, Starcoder2, Phi-3) windows every
    layer, and Gemma 2/3 and gpt-oss window only their sliding_attention layers. A window of 0 is none."""
    layers = r.num("num_hidden_layers")
    types = r.cfg.get("layer_types")
    window = r.opt_num("sliding_window") or None
    if isinstance(types, list):
        if len(types) != layers:
            raise HfConfigError(r._key("layer_types"), f"lists {len(types)} layers, num_hidden_layers is {layers}")
        sliding = sum(1 for t in types if t == "sliding_attention")
        interleaved = len(set(types)) > 1
    elif default_pattern is not None:       # transformers builds layer_types for these families
        sliding = sum(1 for i in range(layers) if default_pattern(i))
        interleaved = 0 < sliding < layers
    else:
        sliding, interleaved = layers, False
    if window is None:
        if interleaved:
            raise HfConfigError(r._key("sliding_window"), f"{r.name} has sliding_attention layers but no window size")
        return {}
    if not interleaved:
        sliding = layers                    # the model-level window applies to every layer
    return {"sliding_window": window, "sliding_window_layers": sliding}


def _decoder(r: _Reader, **extra: Any) -> Fields:
    """The fields every decoder-only family states the same way."""
    heads = r.num("num_attention_heads")
    out = dict(
        num_hidden_layers=r.num("num_hidden_layers"),
        hidden_size=r.num("hidden_size"),
        intermediate_size=r.num("intermediate_size"),
        num_attention_heads=heads,
        num_key_value_heads=r.num("num_key_value_heads", default=heads),
        vocab_size=r.num("vocab_size"),
        tie_word_embeddings=r.flag("tie_word_embeddings", r.model_type in _TIED_BY_DEFAULT),
        max_position_embeddings=_context(r),
    )
    if r.has("head_dim"):
        out["head_dim"] = r.num("head_dim")
    out.update(extra)
    return out


def _dense_moe_split(r: _Reader) -> int:
    """Leading dense layers of a Qwen MoE (mlp_only_layers, decoder_sparse_step); others unsupported."""
    step = r.num("decoder_sparse_step", default=1)
    only = r.cfg.get("mlp_only_layers") or []
    if step != 1:
        raise HfConfigError(r._key("decoder_sparse_step"), f"{step} (experts every {step} layers) is not sized yet: "
                                                           "only 1 is; write the architecture block by hand")
    if only and list(only) != list(range(len(only))):
        raise HfConfigError(r._key("mlp_only_layers"), "dense layers other than the leading ones are not sized yet")
    return len(only)


def _llama_biases(r: _Reader) -> Fields:
    return {"attention_bias": "all" if r.flag("attention_bias", False) else "none",
            "mlp_bias": r.flag("mlp_bias", False)}


# ----------------------------------------------------------------------------- families

def _llama(r: _Reader) -> Fields:
    return _decoder(r, **_llama_biases(r), **_windowed(r, None))


def _mixtral(r: _Reader) -> Fields:
    return _decoder(r, num_experts=r.num("num_local_experts"), num_experts_per_tok=r.num("num_experts_per_tok"),
                    **_windowed(r, None))


def _qwen_window(r: _Reader) -> Callable[[int], bool] | None:
    """Qwen configs name a window even when it is off: transformers drops it unless use_sliding_window,
    and then only layers from max_window_layers on slide."""
    if not r.flag("use_sliding_window", False):
        r.cfg = {**r.cfg, "sliding_window": None, "layer_types": None}
        return None
    first = r.num("max_window_layers", default=0)
    return lambda i: i >= first


def _qwen2(r: _Reader) -> Fields:
    return _decoder(r, attention_bias="qkv", **_windowed(r, _qwen_window(r)))


def _qwen3(r: _Reader) -> Fields:
    return _decoder(r, qk_norm=True, **_llama_biases(r), **_windowed(r, _qwen_window(r)))


def _qwen2_moe(r: _Reader) -> Fields:
    width = r.num("moe_intermediate_size")
    shared = r.num("shared_expert_intermediate_size", default=0)
    if shared % width:
        raise HfConfigError(r._key("shared_expert_intermediate_size"), f"{shared} is not a multiple of "
                                                                       f"moe_intermediate_size ({width})")
    return _decoder(r, attention_bias="qkv", num_experts=r.num("num_experts"),
                    num_experts_per_tok=r.num("num_experts_per_tok"), moe_intermediate_size=width,
                    num_shared_experts=shared // width, shared_expert_gate=shared > 0,
                    first_dense_layers=_dense_moe_split(r), **_windowed(r, _qwen_window(r)))


def _qwen3_moe(r: _Reader) -> Fields:
    return _decoder(r, qk_norm=True, **_llama_biases(r), num_experts=r.num("num_experts"),
                    num_experts_per_tok=r.num("num_experts_per_tok"),
                    moe_intermediate_size=r.num("moe_intermediate_size"), first_dense_layers=_dense_moe_split(r),
                    **_windowed(r, _qwen_window(r)))


def _gemma(r: _Reader) -> Fields:
    return _decoder(r, **_llama_biases(r))


def _gemma2(r: _Reader) -> Fields:
    # transformers Gemma2Config: layer_types default "sliding_attention" if (i + 1) % 2 else "full_attention"
    return _decoder(r, norms_per_layer=4, **_llama_biases(r), **_windowed(r, lambda i: bool((i + 1) % 2)))


def _gemma3_text(r: _Reader) -> Fields:
    pattern = r.num("sliding_window_pattern", default=6)
    return _decoder(r, norms_per_layer=4, qk_norm=True, **_llama_biases(r),
                    **_windowed(r, lambda i: bool((i + 1) % pattern)))


def _siglip_parameters(v: _Reader) -> int:
    """A SigLIP vision tower (Gemma 3's): patch and position embeddings, pre-norm ViT blocks, a final norm."""
    d, inner = v.num("hidden_size"), v.num("intermediate_size")
    layers, patch, image = v.num("num_hidden_layers"), v.num("patch_size"), v.num("image_size")
    channels = v.num("num_channels", default=3)
    embed = channels * patch * patch * d + d + (image // patch) ** 2 * d
    block = 4 * (d * d + d) + 2 * d * inner + inner + d + 2 * 2 * d
    return embed + layers * block + 2 * d


# transformers' Gemma3TextConfig defaults: Gemma 3's config.json states only what differs from them
_GEMMA3_TEXT_DEFAULTS = {"vocab_size": 262208, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
                         "max_position_embeddings": 131072, "sliding_window": 4096, "sliding_window_pattern": 6}


def _gemma3(r: _Reader) -> Fields:
    """Gemma 3 4B and up: a gemma3_text language model, a SigLIP tower and a projector."""
    text, vision = r.cfg.get("text_config"), r.cfg.get("vision_config")
    if not isinstance(text, dict) or not isinstance(vision, dict):
        raise HfConfigError(r._key("text_config"), f"{r.name}: a gemma3 config has text_config and vision_config")
    t = _Reader({**_GEMMA3_TEXT_DEFAULTS, **text}, "gemma3_text", r.name, r._key("text_config."))
    v = _Reader(vision, "siglip_vision_model", r.name, r._key("vision_config."))
    fields = _gemma3_text(t)
    r.notes += t.notes
    vd = v.num("hidden_size")
    projector = vd * fields["hidden_size"] + vd     # mm_input_projection_weight + mm_soft_emb_norm
    fields["vision_parameters"] = _siglip_parameters(v) + projector
    return fields


def _phi3(r: _Reader) -> Fields:
    return _decoder(r, **_windowed(r, None))


def _starcoder2(r: _Reader) -> Fields:
    bias = r.flag("use_bias", True)
    norm = r.cfg.get("norm_type", "layer_norm")
    if norm not in ("layer_norm", "rms_norm"):
        raise HfConfigError(r._key("norm_type"), f"{norm!r}: Starcoder2 uses layer_norm or rms_norm")
    return _decoder(r, mlp="plain", attention_bias="all" if bias else "none", mlp_bias=bias,
                    norm="layernorm" if norm == "layer_norm" else "rmsnorm", **_windowed(r, None))


def _deepseek(r: _Reader) -> Fields:
    freq = r.num("moe_layer_freq", default=1)
    if freq != 1:
        raise HfConfigError(r._key("moe_layer_freq"), f"{freq} (experts every {freq} layers) is not sized yet: "
                                                      "only 1 is; write the architecture block by hand")
    if r.cfg.get("num_nextn_predict_layers"):
        r.notes.append(f"num_nextn_predict_layers {r.cfg['num_nextn_predict_layers']}: the multi-token-prediction "
                       "layer is loaded only for speculative decoding and is not counted")
    moe = {}
    if r.has("n_routed_experts"):
        moe = dict(num_experts=r.num("n_routed_experts"), num_experts_per_tok=r.num("num_experts_per_tok"),
                   moe_intermediate_size=r.num("moe_intermediate_size"),
                   num_shared_experts=r.num("n_shared_experts", default=0),
                   first_dense_layers=r.num("first_k_dense_replace", default=0),
                   router_bias=r.cfg.get("topk_method") == "noaux_tc")   # e_score_correction_bias
    return _decoder(r, **_llama_biases(r), q_lora_rank=r.opt_num("q_lora_rank"), kv_lora_rank=r.num("kv_lora_rank"),
                    qk_nope_head_dim=r.num("qk_nope_head_dim"), qk_rope_head_dim=r.num("qk_rope_head_dim"),
                    v_head_dim=r.num("v_head_dim"), **moe)


def _gpt_oss(r: _Reader) -> Fields:
    # gpt-oss: q/k/v/o biases, a sink logit per head, a router with bias, experts with biases;
    # layer_types alternate sliding (window 128) and full attention
    return _decoder(r, attention_bias="all" if r.flag("attention_bias", True) else "none", mlp_bias=True,
                    attention_sinks=True, router_bias=True,
                    num_experts=r.num("num_local_experts", "num_experts"),
                    num_experts_per_tok=r.num("num_experts_per_tok", "experts_per_token"),
                    **_windowed(r, lambda i: i % 2 == 0))


def _bert(r: _Reader) -> Fields:
    heads = r.num("num_attention_heads")
    if r.cfg.get("position_embedding_type", "absolute") != "absolute":
        raise HfConfigError(r._key("position_embedding_type"), "only absolute position embeddings are sized")
    archs = r.cfg.get("architectures") or []
    pooler = not any(a.endswith(("ForMaskedLM", "ForPreTraining")) for a in archs)
    return dict(num_hidden_layers=r.num("num_hidden_layers"), hidden_size=r.num("hidden_size"),
                intermediate_size=r.num("intermediate_size"), num_attention_heads=heads, num_key_value_heads=heads,
                vocab_size=r.num("vocab_size"), tie_word_embeddings=True,
                max_position_embeddings=r.num("max_position_embeddings"), mlp="plain", attention_bias="all",
                mlp_bias=True, norm="layernorm", position_embedding="absolute", task="embed",
                type_vocab_size=r.num("type_vocab_size", default=2), pooler=pooler, embedding_norm=True)


def _nomic_bert(r: _Reader) -> Fields:
    hidden, heads = r.num("n_embd"), r.num("n_head")
    act = r.cfg.get("activation_function", "gelu")
    rotary = (r.cfg.get("rotary_emb_fraction") or 0) > 0
    if not rotary:
        raise HfConfigError(r._key("rotary_emb_fraction"), "nomic_bert without rotary embeddings is not sized")
    return dict(num_hidden_layers=r.num("n_layer"), hidden_size=hidden,
                intermediate_size=r.num("n_inner", default=4 * hidden), num_attention_heads=heads,
                num_key_value_heads=heads, vocab_size=r.num("vocab_size"), tie_word_embeddings=True,
                max_position_embeddings=r.num("n_positions", "max_position_embeddings"),
                mlp="gated" if act in ("swiglu", "geglu") else "plain",
                attention_bias="all" if r.flag("qkv_proj_bias", True) else "none",
                mlp_bias=r.flag("mlp_fc1_bias", True), norm="layernorm", position_embedding="rope", task="embed",
                type_vocab_size=r.num("type_vocab_size", default=2), pooler=False, embedding_norm=True)


_FAMILIES = {
    "llama": _llama, "mistral": _llama, "granite": _llama, "mixtral": _mixtral,
    "qwen2": _qwen2, "qwen2_moe": _qwen2_moe, "qwen3": _qwen3, "qwen3_moe": _qwen3_moe,
    "gemma": _gemma, "gemma2": _gemma2, "gemma3_text": _gemma3_text, "gemma3": _gemma3,
    "phi3": _phi3, "starcoder2": _starcoder2, "deepseek_v2": _deepseek, "deepseek_v3": _deepseek,
    "gpt_oss": _gpt_oss, "bert": _bert, "nomic_bert": _nomic_bert,
}
SUPPORTED_MODEL_TYPES = tuple(sorted(_FAMILIES))


def kv_note(model: HfModel) -> str | None:
    a = model.architecture
    if not a.sliding_window_layers:
        return None
    return (f"{a.sliding_window_layers} of {a.num_hidden_layers} layers attend within a {a.sliding_window}-token "
            f"window: they keep at most that much KV per sequence")

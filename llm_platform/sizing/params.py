"""Every weight tensor of a transformer, derived from its architecture.

The tensor list, not a scalar count, is what sizing needs: quantization formats treat
embeddings, attention, MLP and expert tensors differently (AWQ keeps embeddings in 16 bit;
llama.cpp's Q4_K_M gives some ffn_down and attn_v tensors 6 bits), and tensor parallelism
shards some tensors and replicates others.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from llm_platform.catalog.architecture import Architecture

# linear: a matmul weight that quantization formats quantize.
# embedding: a lookup table (token, position, token type); quantized by GGUF only.
# vector: norms, biases, router scores: kept in 16/32 bit by every format.
Role = Literal["linear", "embedding", "vector"]


@dataclass(frozen=True)
class Tensor:
    name: str          # llama.cpp-style category: attn_q, ffn_down, token_embd, output, ...
    layer: int         # -1 outside the transformer blocks
    in_features: int   # the row length quantization blocks run along (ggml ne[0])
    out_features: int
    count: int = 1     # experts stacked in one tensor
    role: Role = "linear"
    sharded: bool = True   # split across tensor-parallel ranks (False: every rank holds a copy)

    @property
    def numel(self) -> int:
        return self.in_features * self.out_features * self.count


def _linear(name: str, layer: int, fin: int, fout: int, *, count: int = 1, sharded: bool = True,
            bias: bool = False) -> list[Tensor]:
    out = [Tensor(name, layer, fin, fout, count, "linear", sharded)]
    if bias:
        out.append(Tensor(name + "_bias", layer, 1, fout, count, "vector", sharded))
    return out


def _norm(name: str, layer: int, width: int, arch: Architecture) -> list[Tensor]:
    n = 2 if arch.norm == "layernorm" else 1   # LayerNorm has a bias, RMSNorm only a weight
    return [Tensor(name, layer, 1, width * n, 1, "vector", False)]


def _attention(arch: Architecture, i: int) -> list[Tensor]:
    h = arch.hidden_size
    qkv_bias = arch.attention_bias in ("qkv", "all")
    o_bias = arch.attention_bias == "all"
    if arch.is_mla:
        # Architecture._consistent: the MLA fields come all together (is_mla) or not at all
        assert (arch.kv_lora_rank is not None and arch.qk_nope_head_dim is not None
                and arch.qk_rope_head_dim is not None and arch.v_head_dim is not None)
        heads = arch.num_attention_heads
        qk_head = arch.qk_nope_head_dim + arch.qk_rope_head_dim
        t: list[Tensor] = []
        if arch.q_lora_rank:
            t += _linear("attn_q_a", i, h, arch.q_lora_rank, sharded=False)
            t += _norm("attn_q_a_norm", i, arch.q_lora_rank, arch)
            t += _linear("attn_q_b", i, arch.q_lora_rank, heads * qk_head)
        else:
            t += _linear("attn_q", i, h, heads * qk_head)
        t += _linear("attn_kv_a_mqa", i, h, arch.kv_lora_rank + arch.qk_rope_head_dim, sharded=False)
        t += _norm("attn_kv_a_norm", i, arch.kv_lora_rank, arch)
        t += _linear("attn_kv_b", i, arch.kv_lora_rank, heads * (arch.qk_nope_head_dim + arch.v_head_dim))
        t += _linear("attn_output", i, heads * arch.v_head_dim, h, bias=o_bias)
        return t
    d = arch.head_size
    q, kv = arch.num_attention_heads * d, arch.kv_heads * d
    return (_linear("attn_q", i, h, q, bias=qkv_bias) + _linear("attn_k", i, h, kv, bias=qkv_bias)
            + _linear("attn_v", i, h, kv, bias=qkv_bias) + _linear("attn_output", i, q, h, bias=o_bias))


def _mlp(arch: Architecture, i: int, width: int, *, suffix: str = "", count: int = 1) -> list[Tensor]:
    h, b = arch.hidden_size, arch.mlp_bias
    t = []
    if arch.mlp == "gated":
        t += _linear("ffn_gate" + suffix, i, h, width, count=count, bias=b)
    t += _linear("ffn_up" + suffix, i, h, width, count=count, bias=b)
    t += _linear("ffn_down" + suffix, i, width, h, count=count, bias=b)
    return t


def _feed_forward(arch: Architecture, i: int) -> list[Tensor]:
    if not arch.is_moe or i < arch.first_dense_layers:
        return _mlp(arch, i, arch.intermediate_size)
    assert arch.num_experts is not None   # is_moe
    w = arch.expert_intermediate
    t = [Tensor("ffn_gate_inp", i, arch.hidden_size, arch.num_experts, 1, "vector", False)]  # the router
    t += _mlp(arch, i, w, suffix="_exps", count=arch.num_experts)
    if arch.num_shared_experts:
        t += _mlp(arch, i, w * arch.num_shared_experts, suffix="_shexp")
    return t


@lru_cache(maxsize=256)
def tensors(arch: Architecture) -> tuple[Tensor, ...]:
    """All weight tensors, in checkpoint order. Cached: architectures are immutable."""
    h = arch.hidden_size
    t = [Tensor("token_embd", -1, h, arch.vocab_size, 1, "embedding")]
    if arch.position_embedding == "absolute":
        t.append(Tensor("position_embd", -1, h, arch.max_position_embeddings, 1, "embedding", False))
    if arch.type_vocab_size:
        t.append(Tensor("token_types", -1, h, arch.type_vocab_size, 1, "embedding", False))
    if arch.embedding_norm:
        t += _norm("token_embd_norm", -1, h, arch)
    for i in range(arch.num_hidden_layers):
        t += _norm("attn_norm", i, h, arch)
        t += _attention(arch, i)
        t += _norm("ffn_norm", i, h, arch)
        t += _feed_forward(arch, i)
    if arch.task == "generate":
        t += _norm("output_norm", -1, h, arch)
        if not arch.tie_word_embeddings:
            t.append(Tensor("output", -1, h, arch.vocab_size))
    elif arch.pooler:
        t += _linear("pooler", -1, h, h, sharded=False, bias=True)
    return tuple(t)


@lru_cache(maxsize=256)
def parameter_count(arch: Architecture) -> int:
    return sum(t.numel for t in tensors(arch))


@lru_cache(maxsize=256)
def active_parameter_count(arch: Architecture) -> int:
    """Parameters one token touches: routed experts count num_experts_per_tok times, not num_experts."""
    total = 0
    for t in tensors(arch):
        if t.count > 1 and arch.num_experts_per_tok is not None:   # is_moe (Architecture._consistent)
            total += t.numel // t.count * arch.num_experts_per_tok
        else:
            total += t.numel
    return total


# ----------------------------------------------------------------------------- checkpoint module names

_HF = {
    "attn_q": ("self_attn.q_proj",), "attn_k": ("self_attn.k_proj",), "attn_v": ("self_attn.v_proj",),
    "attn_output": ("self_attn.o_proj",), "attn_q_a": ("self_attn.q_a_proj",), "attn_q_b": ("self_attn.q_b_proj",),
    "attn_kv_a_mqa": ("self_attn.kv_a_proj_with_mqa",), "attn_kv_b": ("self_attn.kv_b_proj",),
    "ffn_gate": ("mlp.gate_proj",), "ffn_up": ("mlp.up_proj",), "ffn_down": ("mlp.down_proj",),
    "ffn_gate_exps": ("mlp.experts.{e}.gate_proj", "block_sparse_moe.experts.{e}.w1"),
    "ffn_up_exps": ("mlp.experts.{e}.up_proj", "block_sparse_moe.experts.{e}.w3"),
    "ffn_down_exps": ("mlp.experts.{e}.down_proj", "block_sparse_moe.experts.{e}.w2"),
    "ffn_gate_shexp": ("mlp.shared_experts.gate_proj", "mlp.shared_expert.gate_proj"),
    "ffn_up_shexp": ("mlp.shared_experts.up_proj", "mlp.shared_expert.up_proj"),
    "ffn_down_shexp": ("mlp.shared_experts.down_proj", "mlp.shared_expert.down_proj"),
    "ffn_gate_inp": ("mlp.gate", "block_sparse_moe.gate"),
}


def module_names(t: Tensor) -> tuple[str, ...]:
    """The Hugging Face module name(s) of a linear tensor, for matching a checkpoint's
    `modules_to_not_convert`; routed experts are named as expert 0 and every expert matches alike
    unless a pattern names single experts (no real checkpoint does). Biases share their weight's name."""
    base = t.name.removesuffix("_bias")
    if base == "output":
        return ("lm_head",)
    if base == "token_embd":
        return ("model.embed_tokens",)
    if base == "pooler":
        return ("pooler.dense",)
    return tuple(f"model.layers.{t.layer}." + n.format(e=0) for n in _HF.get(base, (base,)))

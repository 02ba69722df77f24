"""A transformer's shape, as its Hugging Face config.json states it.

Sizing never takes a parameter count on trust: it derives every tensor from these fields
(see sizing/params.py), so a fine-tuned or proprietary model is sized as well as a
registry one once its `architecture` block is given.
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_validator


class Architecture(BaseModel):
    """Fields of config.json that determine parameter count and KV-cache size.

    Defaults follow the Llama family (gated MLP, RMSNorm, RoPE, no biases, untied head).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    num_hidden_layers: PositiveInt
    hidden_size: PositiveInt
    intermediate_size: PositiveInt
    num_attention_heads: PositiveInt
    num_key_value_heads: Optional[PositiveInt] = Field(
        None, description="GQA/MQA key-value heads; default: num_attention_heads (plain multi-head attention)")
    head_dim: Optional[PositiveInt] = Field(None, description="default: hidden_size / num_attention_heads")
    vocab_size: PositiveInt
    tie_word_embeddings: bool = False
    max_position_embeddings: PositiveInt
    mlp: Literal["gated", "plain"] = "gated"
    attention_bias: Literal["none", "qkv", "all"] = "none"
    mlp_bias: bool = False
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    position_embedding: Literal["rope", "absolute"] = "rope"
    task: Literal["generate", "embed"] = "generate"
    # Mixture of experts
    num_experts: Optional[PositiveInt] = None
    num_experts_per_tok: Optional[PositiveInt] = None
    moe_intermediate_size: Optional[PositiveInt] = None
    num_shared_experts: int = Field(0, ge=0)
    first_dense_layers: int = Field(0, ge=0, description="leading layers with a dense MLP (DeepSeek first_k_dense_replace)")
    # Multi-head latent attention (DeepSeek-V2/V3)
    q_lora_rank: Optional[PositiveInt] = None
    kv_lora_rank: Optional[PositiveInt] = None
    qk_nope_head_dim: Optional[PositiveInt] = None
    qk_rope_head_dim: Optional[PositiveInt] = None
    v_head_dim: Optional[PositiveInt] = None
    index_head_dim: Optional[PositiveInt] = Field(
        None, description="DeepSeek sparse attention (V3.2): the lightning indexer's key width; it keeps its own "
                          "per-token key cache beside the MLA latent")
    # Encoders (BERT-like embedders)
    type_vocab_size: int = Field(0, ge=0)
    pooler: bool = False
    embedding_norm: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> "Architecture":
        kv = self.kv_heads
        if self.num_attention_heads % kv:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({kv}): each KV head serves a whole group of query heads")
        if self.head_dim is None and not self.is_mla and self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size is not divisible by num_attention_heads: give head_dim explicitly")
        if (self.num_experts is None) != (self.num_experts_per_tok is None):
            raise ValueError("num_experts and num_experts_per_tok go together: give both for a mixture of experts, or neither")
        if (self.num_experts is not None and self.num_experts_per_tok is not None
                and self.num_experts_per_tok > self.num_experts):
            raise ValueError("num_experts_per_tok cannot exceed num_experts")
        if self.first_dense_layers > self.num_hidden_layers:
            raise ValueError("first_dense_layers cannot exceed num_hidden_layers")
        if self.index_head_dim is not None and self.kv_lora_rank is None:
            raise ValueError("index_head_dim (DeepSeek sparse attention) goes with multi-head latent attention: "
                             "give kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim and v_head_dim too")
        mla = (self.kv_lora_rank, self.qk_nope_head_dim, self.qk_rope_head_dim, self.v_head_dim)
        if any(v is not None for v in mla) and not all(v is not None for v in mla):
            raise ValueError("multi-head latent attention needs all of kv_lora_rank, qk_nope_head_dim, "
                             "qk_rope_head_dim and v_head_dim")
        return self

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None

    @property
    def is_moe(self) -> bool:
        return self.num_experts is not None

    @property
    def expert_intermediate(self) -> int:
        return self.moe_intermediate_size or self.intermediate_size

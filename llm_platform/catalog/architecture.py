"""A transformer's shape, as its Hugging Face config.json states it.

Sizing never takes a parameter count on trust: it derives every tensor from these fields
(see sizing/params.py), so a fine-tuned or proprietary model is sized as well as a
registry one once its `architecture` block is given.
"""
from __future__ import annotations

from typing import Literal

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
    num_key_value_heads: PositiveInt | None = Field(
        None, description="GQA/MQA key-value heads; default: num_attention_heads (plain multi-head attention)")
    head_dim: PositiveInt | None = Field(None, description="default: hidden_size / num_attention_heads")
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
    num_experts: PositiveInt | None = None
    num_experts_per_tok: PositiveInt | None = None
    moe_intermediate_size: PositiveInt | None = None
    num_shared_experts: int = Field(0, ge=0)
    first_dense_layers: int = Field(0, ge=0,
                                    description="leading layers with a dense MLP (DeepSeek first_k_dense_replace)")
    # Multi-head latent attention (DeepSeek-V2/V3)
    q_lora_rank: PositiveInt | None = None
    kv_lora_rank: PositiveInt | None = None
    qk_nope_head_dim: PositiveInt | None = None
    qk_rope_head_dim: PositiveInt | None = None
    v_head_dim: PositiveInt | None = None
    index_head_dim: PositiveInt | None = Field(
        None, description="DeepSeek sparse attention (V3.2): the lightning indexer's key width; it keeps its own "
                          "per-token key cache beside the MLA latent")
    # Encoders (BERT-like embedders)
    type_vocab_size: int = Field(0, ge=0)
    pooler: bool = False
    embedding_norm: bool = False
    # Details some families add (Gemma 2/3, Qwen3, gpt-oss, Qwen2-MoE, DeepSeek-V3)
    norms_per_layer: int = Field(2, ge=1, le=8, description="norms in each block: 2 (pre-attention, pre-MLP); "
                                 "Gemma 2/3 also norm after attention and after the MLP (4)")
    qk_norm: bool = Field(False, description="a per-head RMSNorm on queries and keys (Qwen3, Gemma 3, OLMo 2)")
    attention_sinks: bool = Field(False, description="one learned sink logit per attention head (gpt-oss)")
    router_bias: bool = Field(False, description="a bias per expert on the router (gpt-oss, DeepSeek-V3's "
                                                 "e_score_correction_bias)")
    shared_expert_gate: bool = Field(False, description="a sigmoid gate (hidden -> 1) on the shared expert (Qwen2-MoE)")
    vision_parameters: int = Field(0, ge=0, description="parameters of a vision tower and projector served "
                                   "with the model (kept in 16 bit)")
    # Sliding-window attention, as vLLM's hybrid KV cache manager allocates it: a windowed layer keeps
    # at most sliding_window - 1 + max_num_batched_tokens tokens per sequence, a full layer all of them.
    sliding_window: PositiveInt | None = Field(None, description="tokens a windowed layer attends to")
    sliding_window_layers: int = Field(0, ge=0, description="how many layers attend within the window "
                                       "(layer_types 'sliding_attention'); the others keep the whole context")

    @model_validator(mode="after")
    def _consistent(self) -> Architecture:
        kv = self.kv_heads
        if self.num_attention_heads % kv:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({kv}): each KV head serves a whole group of query heads")
        if self.head_dim is None and not self.is_mla and self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size is not divisible by num_attention_heads: give head_dim explicitly")
        if (self.num_experts is None) != (self.num_experts_per_tok is None):
            raise ValueError("num_experts and num_experts_per_tok go together: "
                             "give both for a mixture of experts, or neither")
        if (self.num_experts is not None and self.num_experts_per_tok is not None
                and self.num_experts_per_tok > self.num_experts):
            raise ValueError("num_experts_per_tok cannot exceed num_experts")
        if self.first_dense_layers > self.num_hidden_layers:
            raise ValueError("first_dense_layers cannot exceed num_hidden_layers")
        if self.sliding_window_layers > self.num_hidden_layers:
            raise ValueError("sliding_window_layers cannot exceed num_hidden_layers")
        if self.sliding_window_layers and self.sliding_window is None:
            raise ValueError("sliding_window_layers needs sliding_window (the window, in tokens)")
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

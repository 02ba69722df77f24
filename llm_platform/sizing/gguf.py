"""Which GGML type llama.cpp gives each tensor of a GGUF file.

A "Q4_K_M" file is not 4.5 bits everywhere: llama.cpp's quantizer raises the output head to
Q6_K and, in a pattern over the layers, attn_v and ffn_down too. This ports the part of
`llama_tensor_get_type_impl` (src/llama-quant.cpp, ggml-org/llama.cpp, read 2026-11-25)
that the file types in catalog/quantization.yaml reach, for non-Falcon architectures.
"""
from __future__ import annotations

from llm_platform.catalog.architecture import Architecture

from .params import Tensor


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


_FALLBACK = {"Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0", "Q2_K": "Q4_0", "Q3_K": "Q4_0"}


def tensor_types(arch: Architecture, tensors: tuple[Tensor, ...], ftype: str, default: str,
                 blocks: dict[str, int]) -> list[str]:
    """GGML type per tensor, aligned with `tensors`. `ftype` is the precision key (q4_k_m...)."""
    n_expert = arch.num_experts or 1
    n_attn_v = sum(1 for t in tensors if t.name in ("attn_v", "attn_kv_b"))
    n_ffn_down = sum(1 for t in tensors if t.name.startswith("ffn_down") and t.role == "linear")
    i_attn_v = i_ffn_down = 0
    out: list[str] = []
    for t in tensors:
        if t.role == "vector":
            out.append("F32")     # norms, biases and the MoE router are never quantized
            continue
        if t.name in ("position_embd", "token_types"):
            out.append("F16")     # not quantized (BERT position and token-type tables)
            continue
        new = default
        if t.name == "output" or (t.name == "token_embd" and arch.tie_word_embeddings):
            if t.in_features % blocks[default]:
                new = "Q8_0"
            elif new != "Q8_0":
                new = "Q6_K"
        elif t.name == "token_embd":
            pass
        elif t.name in ("attn_v", "attn_kv_b"):
            if ftype in ("q4_k_m", "q5_k_m") and _use_more_bits(i_attn_v, n_attn_v):
                new = "Q6_K"
            elif ftype == "q4_k_s" and i_attn_v < 4:
                new = "Q5_K"
            if arch.num_hidden_layers == 80 and new in ("Q3_K", "Q4_K"):
                new = "Q5_K"      # llama.cpp's LLM_TYPE_70B rule: attn_v is 8x smaller there
            if n_expert == 8:
                new = "Q8_0"
            i_attn_v += 1
        elif t.name == "attn_k" and n_expert == 8:
            new = "Q8_0"
        elif t.name.startswith("ffn_down"):
            i = t.layer if n_expert > 1 else i_ffn_down
            if ftype in ("q4_k_m", "q5_k_m") and _use_more_bits(i, n_ffn_down):
                new = "Q6_K"
            elif ftype == "q4_k_s" and i < n_ffn_down // 8:
                new = "Q5_K"
            i_ffn_down += 1
        elif t.name == "attn_output" and n_expert == 8 and ftype in ("q4_k_s", "q4_k_m"):
            new = "Q5_K"
        if t.in_features % blocks[new]:
            new = _FALLBACK.get(new, new)
            if t.in_features % blocks[new]:
                new = "F16"
        out.append(new)
    return out

"""Write a small GGUF file from a tiny random Llama folder, the way llama.cpp lays one out, for the GGUF tests.

No GGUF model can be downloaded here, so the tests build one: the folder's byte-level BPE tokenizer becomes a
``gpt2`` GGUF vocabulary (tokens, merges, token types) and its weights become GGUF tensors under llama.cpp's names.
The q/k projections are stored in llama.cpp's rotary layout, which transformers undoes when it reads them, and
two matrices are stored Q8_0-quantised, so loading exercises de-quantisation as with a real 4-/8-bit file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM

_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_QUANTIZED = ("blk.0.ffn_up.weight", "blk.0.ffn_down.weight")


def _to_llama_cpp_rotary(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """llama.cpp's convert script permutes q/k rows per head; transformers' GGUF reader reverses it."""
    rows, columns = weight.shape
    return weight.reshape(num_heads, 2, rows // num_heads // 2, columns).swapaxes(1, 2).reshape(rows, columns)


def write_tiny_llama_gguf(backbone_dir: str | Path, gguf_path: str | Path) -> Path:
    """Write ``backbone_dir`` (a `build_tiny_backbone("llama")` folder) as a GGUF file; returns ``gguf_path``."""
    import gguf

    backbone_dir, gguf_path = Path(backbone_dir), Path(gguf_path)
    model = AutoModelForCausalLM.from_pretrained(backbone_dir, dtype=torch.float32)
    config = model.config
    tokenizer = json.loads((backbone_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = tokenizer["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.__getitem__)
    specials = {entry["content"] for entry in tokenizer["added_tokens"]}
    merges = [merge if isinstance(merge, str) else " ".join(merge) for merge in tokenizer["model"]["merges"]]

    writer = gguf.GGUFWriter(str(gguf_path), arch="llama")
    writer.add_name("tiny-llama-test")
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if token in specials else 1 for token in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(config.bos_token_id)
    writer.add_eos_token_id(config.eos_token_id)
    writer.add_add_bos_token(True)

    state = {name: tensor.detach().numpy().astype(np.float32) for name, tensor in model.state_dict().items()}
    tensors = {"token_embd.weight": state["model.embed_tokens.weight"],
               "output_norm.weight": state["model.norm.weight"]}
    for layer in range(config.num_hidden_layers):
        for hf_name, gguf_name in _LAYER_NAMES.items():
            weight = state[f"model.layers.{layer}.{hf_name}"]
            if hf_name == "self_attn.q_proj.weight":
                weight = _to_llama_cpp_rotary(weight, config.num_attention_heads)
            elif hf_name == "self_attn.k_proj.weight":
                weight = _to_llama_cpp_rotary(weight, config.num_key_value_heads)
            tensors[f"blk.{layer}.{gguf_name}"] = weight
    for name, weight in tensors.items():
        if name in _QUANTIZED:
            quantized = gguf.quants.quantize(weight, gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(name, quantized, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            writer.add_tensor(name, np.ascontiguousarray(weight))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return gguf_path

"""GPU row of the speed benchmark: LLM-SRec on a Llama-3.2-3B-shaped, random-initialised backbone in bf16, batch 20.

Measures, interleaved with the bare backbone on the identical token batch (see bench/speed.py for the method):
step time of one LLM-SRec training step (20 user prompts + 20 x 4 candidate prompts, the paper's batch and the code's
4 candidates), the bare backbone's forward+backward on the same tokens, tokens/s, model-FLOPs utilisation (MFU), peak
GPU memory (``torch.cuda.max_memory_allocated``), and catalog-encoding items/s against the bare forward.

The backbone has Llama-3.2-3B's shape (hidden 3072, 28 layers, 24 heads / 8 KV heads, MLP 8192, vocab 128,256, rope
theta 500,000 with llama3 scaling, tied embeddings) and random weights: no download is needed, and speed does not
depend on the weights. The tokenizer is a byte-level BPE trained on the item titles (`build_tiny_backbone`'s, with a
32k budget), so prompt lengths are close to, not exactly, Llama-3's.

MFU: the backbone is frozen, so a step computes no weight gradients. Model FLOPs per step =
forward 2*N*T + backward to the inputs 2*N*T (N = non-embedding parameters, T = padded tokens) + attention
(4*L^2*d per sequence and layer forward, twice that backward); MFU = FLOPs / step time / peak dense bf16 FLOP/s of
the GPU (table below, or ``--peak-tflops``). The 6*N*T convention (with weight gradients) is reported next to it.

Without a GPU the script writes ``{"status": "not run: no GPU in this task", ...}`` with the command and exits 0.

Usage (on a GPU machine, from the repository root):
    python bench/gpu_llama3b.py                       # writes bench/results/gpu_llama3b.json
    python bench/gpu_llama3b.py --repeats 20 --gradient-checkpointing
Data: ../shared/data/amazon-scientific-unisrec when present, else a synthetic catalog (`generate_synthetic`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA_DIR, RESULTS_DIR, WORK_DIR, load_dataset, machine_info, set_threads, write_json  # noqa: E402

# Dense (no sparsity) bf16 tensor-core peaks, FLOP/s.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "A6000": 154.8e12, "L40S": 362e12, "L4": 121e12,
             "A10G": 70e12, "4090": 165e12}

LLAMA_32_3B = {
    "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28, "num_attention_heads": 24,
    "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256, "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": True, "hidden_act": "silu",
    "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192},
}


def peak_flops(name: str, override: float | None) -> tuple[float | None, str]:
    if override:
        return override * 1e12, "--peak-tflops"
    for key, value in PEAK_BF16.items():
        if key in name:
            return value, f"table ({key}, dense bf16)"
    return None, "unknown GPU: pass --peak-tflops"


def load_data():
    if (DATA_DIR / "amazon-scientific-unisrec").is_dir():
        return load_dataset("scientific"), "scientific"
    from llm_srec.data import SyntheticConfig, build_recommendation_data, generate_synthetic

    raw = generate_synthetic(SyntheticConfig(num_users=400, num_items=2000, seed=0))
    return build_recommendation_data(raw), "synthetic"


def build(data, device: torch.device, gradient_checkpointing: bool, shape: dict[str, Any] = LLAMA_32_3B,
          attn_implementation: str = "sdpa"):
    from transformers import AutoModel, AutoTokenizer, LlamaConfig

    from llm_srec.backbones import build_tiny_backbone
    from llm_srec.modeling import LLMSRecConfig, LLMSRecForRecommendation, LLMSRecProcessor, SASRecConfig, SASRecModel

    titles = [data.catalog.title(item) for item in range(1, data.num_items + 1)]
    tokenizer_dir = WORK_DIR / "backbones" / "llama3b-tokenizer"
    if not (tokenizer_dir / "tokenizer_config.json").is_file():
        build_tiny_backbone("llama", titles, tokenizer_dir, vocab_size=32000)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(**shape, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    with torch.device(device):
        llm = AutoModel.from_config(config, attn_implementation=attn_implementation, dtype=torch.bfloat16)
    llm.eval()
    if gradient_checkpointing:
        llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    sasrec = SASRecModel(SASRecConfig(num_items=data.num_items)).to(device)
    # llm_config is left None (the model takes llm.config): passing the backbone's own config object would reset its
    # _attn_implementation to None (eager attention) through PreTrainedConfig's sub-config handling.
    llm_config = LLMSRecConfig(llm_name_or_path="random-init Llama-3.2-3B shape", sasrec_config=sasrec.config,
                               max_prompt_length=1024, backbone_dtype="bfloat16")
    processor = LLMSRecProcessor.from_config(llm_config, tokenizer, data.catalog)
    model = LLMSRecForRecommendation(llm_config, llm=llm, sasrec=sasrec, processor=processor)
    return model


def model_flops(work, parameters: int, config) -> dict[str, float]:
    """FLOPs of one training step on the backbone (frozen weights) and of the bare forward."""
    batch = work.batch
    d, layers = config.hidden_size, config.num_hidden_layers
    flops_fwd = 0.0
    for key in ("input_ids", "candidate_input_ids"):
        rows, length = batch[key].shape
        tokens = rows * length
        flops_fwd += 2 * parameters * tokens + 4 * rows * length * length * d * layers
    return {"forward": flops_fwd, "train_frozen": 2 * flops_fwd, "train_6NT_convention": 3 * flops_fwd}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--num-candidates", type=int, default=4)
    parser.add_argument("--encode-batch", type=int, default=128, help="items per encode batch (code: 128 for 3B)")
    parser.add_argument("--encode-items", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--attn-implementation", default="sdpa", help="sdpa (default), eager, flash_attention_2")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "gpu_llama3b.json")
    parser.add_argument("--dry-run-cpu", action="store_true",
                        help="check the script on CPU with a 2-layer, 256-wide model of the same family (no GPU numbers)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default $LLM_SREC_BENCH_THREADS or 1; 0 = torch's default)")
    args = parser.parse_args()
    set_threads(args.threads)
    command = "python " + " ".join(sys.argv)
    shape = LLAMA_32_3B
    if args.dry_run_cpu:
        shape = {**LLAMA_32_3B, "hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 64}
        args.repeats, args.encode_items, args.peak_tflops = 2, 64, args.peak_tflops or 1.0
    elif not torch.cuda.is_available():
        write_json(args.out, {"benchmark": "LLM-SRec on a Llama-3.2-3B-shaped bf16 backbone, batch 20 (GPU)",
                              "status": "not run: no GPU in this task", "command": command,
                              "machine": machine_info()})
        print("not run: no GPU in this task (wrote", args.out, ")")
        return

    from speed import Workloads, measure  # noqa: E402  (same timing method as the CPU rows)

    device = torch.device("cpu" if args.dry_run_cpu else "cuda")
    started = time.perf_counter()
    data, data_name = load_data()
    model = build(data, device, args.gradient_checkpointing, shape, args.attn_implementation)
    work = Workloads(model, data, args.batch_size, args.num_candidates, args.encode_batch, args.encode_items, device,
                     label="llama-3.2-3b-shape (random, bf16)")
    non_embedding = sum(p.numel() for n, p in model.llm.named_parameters() if "embed_tokens" not in n)
    row: dict[str, Any] = measure(work, args.repeats)
    # peak memory of each workload, measured after a reset, in this process
    memory = {}
    for name, fn in () if args.dry_run_cpu else (("llm_srec_step", work.llm_srec_step), ("bare_step", work.bare_step),
                     ("llm_srec_encode", work.llm_srec_encode), ("bare_encode", work.bare_encode)):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        memory[name] = {"peak_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                        "allocated_before_GiB": round(torch.cuda.memory_allocated() / 2**30, 2)}
    row["peak_memory"] = memory
    flops = model_flops(work, non_embedding, model.llm.config)
    gpu_name = "cpu dry run" if args.dry_run_cpu else torch.cuda.get_device_name(0)
    peak, peak_source = peak_flops(gpu_name, args.peak_tflops)
    step = row["train_step_seconds"]["llm_srec_step"]["median"]
    bare = row["train_step_seconds"]["bare_step"]["median"]
    tokens = row["batch"]
    row["throughput"] = {
        "step_seconds_median": step,
        "real_tokens_per_second": round(tokens["real_tokens"] / step, 1),
        "padded_tokens_per_second": round(tokens["padded_tokens"] / step, 1),
        "users_per_second": round(args.batch_size / step, 2),
        "model_flops_per_step": flops["train_frozen"],
        "peak_flops": peak,
        "peak_flops_source": peak_source,
        "mfu_frozen_4NT": round(flops["train_frozen"] / step / peak, 4) if peak else None,
        "mfu_bare_frozen_4NT": round(flops["train_frozen"] / bare / peak, 4) if peak else None,
        "mfu_6NT_convention": round(flops["train_6NT_convention"] / step / peak, 4) if peak else None,
        "non_embedding_parameters": non_embedding,
    }
    result = {
        "benchmark": "LLM-SRec on a Llama-3.2-3B-shaped bf16 backbone, batch 20 (GPU)",
        "status": "cpu dry run (reduced shape; not a result)" if args.dry_run_cpu else "ran",
        "command": command,
        "machine": machine_info(),
        "data": data_name,
        "gradient_checkpointing": args.gradient_checkpointing,
        "attn_implementation": model.llm.config._attn_implementation,
        "row": row,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    write_json(args.out, result)
    print({k: row[k] for k in ("train_step_ratio", "encode_ratio", "throughput", "peak_memory")})


if __name__ == "__main__":
    main()

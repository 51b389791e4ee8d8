"""Tiny, random-initialised backbones (Llama, GPT-2, BERT) with tokenizers trained on the fly.

They let the tests, the demo and the benchmarks run the whole LLM-SRec pipeline offline on a CPU. A backbone built
here has never been pre-trained: anything it "understands" comes from the trained heads, so results obtained with
it must be labelled as random-initialised-backbone results.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoModel,
    AutoModelForCausalLM,
    BertConfig,
    GPT2Config,
    LlamaConfig,
    PreTrainedConfig,
    PreTrainedTokenizerFast,
)

from .modeling.configuration_llm_srec import DEFAULT_PROMPT_TEMPLATES

BACKBONE_KINDS = ("llama", "gpt2", "bert")

_LLAMA_BOS, _LLAMA_EOS = "<|begin_of_text|>", "<|end_of_text|>"
_GPT2_EOS = "<|endoftext|>"
_BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def _prompt_texts() -> list[str]:
    """The fixed prompt wording plus dates and numbers, so the tokenizer has pieces for every prompt part."""
    sample = {"number": "1", "time": "2021-03-04", "title": "Title"}
    texts = [
        template.format(**sample) if "{" in template else template
        for template in DEFAULT_PROMPT_TEMPLATES.values()
    ]
    texts += [
        f"Item No.{number}, Time: 20{number:02d}-{number % 12 + 1:02d}-{number % 28 + 1:02d}" for number in range(100)
    ]
    return texts


def _train_tokenizer(kind: str, texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    if kind == "bert":
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, special_tokens=list(_BERT_SPECIALS), show_progress=False
        )
        tokenizer.train_from_iterator(texts, trainer=trainer)
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))],
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tokenizer,
            unk_token="[UNK]",
            pad_token="[PAD]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
        )
    specials = [_LLAMA_BOS, _LLAMA_EOS] if kind == "llama" else [_GPT2_EOS]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    if kind == "llama":
        # Llama-3 prepends <|begin_of_text|> to every encoded text.
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{_LLAMA_BOS} $A",
            pair=f"{_LLAMA_BOS} $A {_LLAMA_BOS}:1 $B:1",
            special_tokens=[(_LLAMA_BOS, tokenizer.token_to_id(_LLAMA_BOS))],
        )
        return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=_LLAMA_BOS, eos_token=_LLAMA_EOS)
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=_GPT2_EOS, eos_token=_GPT2_EOS, unk_token=_GPT2_EOS
    )


def _model_config(
    kind: str,
    tokenizer: PreTrainedTokenizerFast,
    hidden_size: int,
    num_layers: int,
    num_attention_heads: int,
    max_position_embeddings: int,
) -> PreTrainedConfig:
    vocab_size = len(tokenizer)
    if kind == "llama":
        return LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            intermediate_size=2 * hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_attention_heads,
            num_key_value_heads=num_attention_heads,
            max_position_embeddings=max_position_embeddings,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            tie_word_embeddings=True,  # as Llama-3.2-1B/3B
        )
    if kind == "gpt2":
        return GPT2Config(
            vocab_size=vocab_size,
            n_embd=hidden_size,
            n_layer=num_layers,
            n_head=num_attention_heads,
            n_positions=max_position_embeddings,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=max_position_embeddings,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_backbone(
    kind: str,
    texts: Iterable[str],
    output_dir: str | os.PathLike,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_attention_heads: int = 2,
    vocab_size: int = 1000,
    max_position_embeddings: int = 1024,
    seed: int = 0,
) -> Path:
    """Train a tokenizer on ``texts`` (plus the prompt wording) and save a random-initialised tiny model with it.

    Args:
        kind: ``"llama"`` (byte-level BPE, BOS prepended, causal LM checkpoint), ``"gpt2"`` (byte-level BPE, causal
            LM checkpoint) or ``"bert"`` (lower-cased WordPiece, encoder checkpoint).
        texts: corpus for the tokenizer, e.g. the item titles.
        output_dir: folder to write; it then loads with `AutoModel.from_pretrained` / `AutoTokenizer.from_pretrained`.
        hidden_size, num_layers, num_attention_heads, max_position_embeddings: model size.
        vocab_size: upper bound of the trained vocabulary.
        seed: seeds the random weights, so equal arguments give equal backbones.

    Returns:
        ``output_dir`` as a `Path`.
    """
    if kind not in BACKBONE_KINDS:
        raise ValueError(f"kind must be one of {BACKBONE_KINDS}, got {kind!r}.")
    if hidden_size % num_attention_heads != 0:
        raise ValueError(
            f"hidden_size ({hidden_size}) must be divisible by num_attention_heads ({num_attention_heads})."
        )
    corpus = [text for text in texts if text] + _prompt_texts()
    tokenizer = _train_tokenizer(kind, corpus, vocab_size)
    config = _model_config(kind, tokenizer, hidden_size, num_layers, num_attention_heads, max_position_embeddings)
    torch.manual_seed(seed)
    model = AutoModel.from_config(config) if kind == "bert" else AutoModelForCausalLM.from_config(config)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def convert_gguf_backbone(
    name_or_path: str | os.PathLike, gguf_file: str, output_dir: str | os.PathLike, **hub_kwargs
) -> Path:
    """De-quantise a GGUF checkpoint once into a plain float32 transformers folder (model + tokenizer).

    Why: a GGUF-loaded model refuses `save_pretrained`, and de-quantising on every load costs seconds to minutes; the
    plain folder loads like any Hub checkpoint. ``name_or_path`` is a Hub id or folder holding ``gguf_file``;
    ``hub_kwargs`` (``revision``, ``cache_dir`` ...) go to `from_pretrained`. The folder's ``gguf_source.json``
    names the file it came from, so model cards can name the exact weights.
    """
    import importlib.util
    import json

    if importlib.util.find_spec("gguf") is None:
        raise ImportError("Reading a GGUF file needs the `gguf` package: pip install gguf")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = AutoModelForCausalLM.from_pretrained(name_or_path, gguf_file=gguf_file, dtype=torch.float32, **hub_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, gguf_file=gguf_file, **hub_kwargs)
    with torch.device("meta"):  # no second allocation or random initialisation: the tensors are moved in
        plain = type(source)(source.config)
    plain.load_state_dict(source.state_dict(), assign=True)
    plain.tie_weights()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    record = {"source": str(name_or_path), "gguf_file": gguf_file, "dequantized_to": "float32"}
    (output_dir / "gguf_source.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return output_dir


def gguf_backbone_folder(
    name_or_path: str | os.PathLike, gguf_file: str, convert_dir: str | os.PathLike | None = None, **hub_kwargs
) -> Path:
    """The converted folder of ``gguf_file`` in ``name_or_path``, de-quantised on first use and reused afterwards.

    The folder lives under ``convert_dir`` (default: ``$HF_HOME/llm_srec/gguf``), named by the file and a digest of
    where it came from, so the same GGUF file is converted once per machine and a trained model's
    ``llm_name_or_path`` keeps pointing at the same weights.
    """
    import hashlib

    from huggingface_hub.constants import HF_HOME

    source = os.fspath(name_or_path)
    identity = "\n".join([os.path.abspath(source) if os.path.isdir(source) else source, gguf_file,
                          str(hub_kwargs.get("revision") or "")])
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:12]
    root = Path(convert_dir) if convert_dir is not None else Path(HF_HOME) / "llm_srec" / "gguf"
    folder = root / f"{Path(gguf_file).stem}-{digest}"
    if (folder / "gguf_source.json").is_file():
        return folder
    staging = root / f".{folder.name}.partial-{os.getpid()}"
    convert_gguf_backbone(source, gguf_file, staging, **hub_kwargs)
    try:
        os.replace(staging, folder)  # gguf_source.json is written last: a folder that has it is complete
    except OSError:
        if not (folder / "gguf_source.json").is_file():
            raise
        shutil.rmtree(staging)  # another process converted the same file meanwhile
    return folder


__all__ = ["BACKBONE_KINDS", "build_tiny_backbone", "convert_gguf_backbone", "gguf_backbone_folder"]

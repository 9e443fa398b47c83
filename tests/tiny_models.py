"""Tiny causal LMs built here, for tests: no hub, a few seconds on a CPU."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIALS = ["<s>", "</s>", "<pad>"]
# A chat template in the style of Mistral-Instruct: BOS, then "[INST] ... [/INST]".
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
                 "{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}")


def build_tokenizer(texts: list[str], vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on ``texts`` that prepends BOS like Mistral's does."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def build_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0, window: int = 512,
                head_dim: int | None = None) -> LlamaForCausalLM:
    """A randomly initialised two-layer Llama for ``tokenizer`` (vLLM's CPU attention wants ``head_dim=64``)."""
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=window,
                         head_dim=head_dim or 16,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config)


def save(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, path: Path) -> str:
    """Save both with ``save_pretrained`` and return the directory."""
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def sample_passages(count: int) -> list[str]:
    """Short distinct passages in a lease-like register."""
    return [f"Clause {i}: the tenant pays {100 + 7 * i} euros of rent on day {i % 28 + 1}." for i in range(count)]


def build_random_model(path: Path, window: int = 512) -> str:
    """A tiny model with random weights: it emits noise, which the parser must reject."""
    tokenizer = build_tokenizer(sample_passages(50))
    return save(build_model(tokenizer, window=window), tokenizer, path)


def build_chat_model(path: Path, texts: list[str], window: int = 2048) -> str:
    """A tiny random "instruction-tuned" model: its tokenizer (trained on ``texts``) has ``CHAT_TEMPLATE``."""
    tokenizer = build_tokenizer(texts + ["[INST] [/INST]"], vocab_size=600)
    tokenizer.chat_template = CHAT_TEMPLATE
    return save(build_model(tokenizer, window=window), tokenizer, path)

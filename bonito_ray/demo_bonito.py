"""The real-language-model demo generator: ``--model bonito-smollm2-demo``.

SmolLM2-135M-Instruct (a packaged model, ``bonito_ray.model_cache``) taught Bonito's format by a small LoRA
adapter shipped in this package (``demo_bonito_lora/``, trained by ``jobs/dev/train_bonito_smollm2.py``).
The adapter is merged into the base once, into an ordinary model folder in bonito-ray's cache, so that
every engine (hf, vLLM) and the tokenizer load it like any other model and none of them needs peft.

The folder's name holds a digest of the adapter, so a package with another adapter merges its own. It is
built the way a packaged model is converted: in a temporary folder beside its place, renamed into it once
complete, the record written last, under the cache's lock for that place.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from bonito_ray.model_cache import PACKAGED_MODELS, _complete, build_once, cache_root, model_folder


NAME = "bonito-smollm2-demo"
BASE = "smollm2-135m-instruct"
ADAPTER = Path(__file__).parent / "demo_bonito_lora"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def adapter_digest(adapter: Path | None = None) -> str:
    """A short digest of the adapter's files (the shipped one by default): what the merged folder was built from."""
    adapter = adapter or ADAPTER
    digest = hashlib.sha256()
    for name in ADAPTER_FILES:
        digest.update((adapter / name).read_bytes())
    return digest.hexdigest()[:12]


def merged_folder(adapter: Path | None = None) -> Path:
    """The folder of the base model with ``adapter`` (the shipped one by default) merged in, merging it first if
    the cache has none."""
    adapter = adapter or ADAPTER
    target = cache_root() / "models" / f"{NAME}-{adapter_digest(adapter)}"
    if _complete(target):
        return target
    base = model_folder(PACKAGED_MODELS[BASE])
    record = {"model": NAME, "base": BASE, "adapter_digest": adapter_digest(adapter)}
    return build_once(target, lambda partial: merge(base, adapter, partial), record,
                      f"merging the {NAME} adapter into {BASE}")


def merge(base: Path, adapter: Path, into: Path) -> None:
    """Write ``base`` with the LoRA ``adapter`` folded into its weights, and its tokenizer, into ``into``."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    merged.save_pretrained(into)
    AutoTokenizer.from_pretrained(base).save_pretrained(into)

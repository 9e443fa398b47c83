"""Teach SmolLM2-135M-Instruct Bonito's format with a small LoRA adapter, on CPU.

The training pairs are the demo model's (``jobs/dev/train_demo_model.py``, imported, not copied):
passages of the synthetic corpus of ``jobs/examples/make_demo_corpus.py``, whose generator knows
the facts behind every sentence, and for each task type a meta-template filled with a question or
hypothesis and its answer, in Bonito's output format::

    prompt = build_prompt(passage, task_type)   # "<|tasktype|>\\n...<|task|>\\n"
    target = task_input + "\\n<|pipe|>\\n " + task_output + EOS

Loss is on the target only. Several targets per prompt are packed into one row, each seeing the
prompt but not the other targets (the demo model's packing and attention mask). Only LoRA
matrices on a few attention projections are trained, so what ships is a few-MB adapter
(``bonito_ray/demo_bonito_lora``); ``--model bonito-smollm2-demo`` merges it into the base once
(``bonito_ray/demo_bonito``).

Unlike the demo model, SmolLM2 has read a great deal of English: the adapter only has to teach
the format and the task types, not reading. Passages are capped (``--max-passage-tokens``) to
keep CPU steps short; the task types are those of the quick start (ynqa, exqa, nli) unless
``--task-types`` says otherwise.

Usage: ``python jobs/dev/train_bonito_smollm2.py [--output-dir bonito_ray/demo_bonito_lora] [--steps N]
[--batch-tokens T] [--seed S]``; ``--measure`` times a few steps at several batch sizes and exits.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from bonito_ray.model_cache import PACKAGED_MODELS, model_folder

sys.path.insert(0, str(Path(__file__).resolve().parent))  # train_demo_model lives next to this file

from train_demo_model import (  # noqa: E402
    CORPUS_SEED,
    Group,
    Row,
    build_corpus,
    buckets,
    check_training_file,
    collate,
    encode_groups,
    learning_rate,
    make_groups,
)

BASE = "smollm2-135m-instruct"
DEFAULT_OUTPUT = Path(__file__).resolve().parents[2] / "bonito_ray" / "demo_bonito_lora"
SETTINGS = "training_args.json"  # beside the adapter: how it was trained


def training_groups(tokenizer, task_types: list[str], max_passage_tokens: int, targets: int,
                    rounds: int, seed: int) -> tuple[list[Group], int]:
    """The demo model's groups for ``task_types``, on passages of at most ``max_passage_tokens``,
    ``targets`` targets per prompt. Returns the groups and the number of passages kept."""
    train_passages, _ = build_corpus(CORPUS_SEED)
    check_training_file(train_passages)
    short = [p for p in train_passages
             if len(tokenizer(p.text, add_special_tokens=False)["input_ids"]) <= max_passage_tokens]
    groups = [
        # No copy head here (a pretrained model copies well enough): nothing is marked copied.
        Group(g.prompt, g.targets[:targets], copied=False)
        for g in make_groups(short, rounds, seed)
        if any(g.prompt.startswith(f"<|tasktype|>\n{name}\n") for name in full_names(task_types))
    ]
    return groups, len(short)


def full_names(task_types: list[str]) -> list[str]:
    from bonito_ray.tasks import full_task_name

    return [full_task_name(t) for t in task_types]


def build_model(base: str, args: argparse.Namespace):
    """The base model with LoRA matrices on ``args.target_modules``; only those are trainable."""
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    layers = model.config.num_hidden_layers
    # Only the top layers get LoRA: nothing below them needs a gradient, so backward stops there,
    # which is most of the saving on a CPU (forward is the same, backward is a third as long).
    config = LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=args.dropout,
                        target_modules=args.target_modules, bias="none", task_type="CAUSAL_LM",
                        layers_to_transform=list(range(layers - args.top_layers, layers)))
    return get_peft_model(model, config)


def batches(rows: list[Row], max_tokens: int, max_rows: int, pad_id: int,
            rng: random.Random) -> Iterator[dict[str, torch.Tensor]]:
    """Endless shuffled passes over the rows, length-bucketed, at most ``max_rows`` rows a batch."""
    while True:
        for group in buckets(rows, max_tokens, rng):
            for begin in range(0, len(group), max_rows):
                yield collate([rows[i] for i in group[begin:begin + max_rows]], pad_id)


def step(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Loss of one batch: cross-entropy on the target tokens only (labels are aligned already)."""
    causal_lm = model.base_model.model
    hidden = causal_lm.model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                             attention_mask=batch["attention_mask"]).last_hidden_state
    labels = batch["labels"]
    predicting = labels != -100
    logits = causal_lm.lm_head(hidden[predicting])
    return torch.nn.functional.cross_entropy(logits.float(), labels[predicting])


def train(model, stream: Iterator[dict[str, torch.Tensor]], args: argparse.Namespace) -> dict:
    """``args.steps`` optimiser steps; prints loss, step time and tokens/s. Returns the last figures."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=0.0)
    model.train()
    start, tokens, running, figures = time.monotonic(), 0, None, {}
    for number, batch in enumerate(stream, start=1):
        # Progress is by steps or by the time budget, whichever is further: a slow machine still
        # ends on time, with the learning rate decayed as on a fast one.
        progress = max(number - 1, int(args.steps * (time.monotonic() - start) / args.budget_s))
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(min(progress, args.steps - 1), args.steps, args.lr, args.warmup)
        loss = step(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens += batch["input_ids"].numel()
        running = loss.item() if running is None else 0.8 * running + 0.2 * loss.item()
        elapsed = time.monotonic() - start
        figures = {"steps": number, "loss": round(running, 4), "seconds": round(elapsed),
                   "seconds_per_step": round(elapsed / number, 2), "tokens_per_s": round(tokens / elapsed)}
        last = number == args.steps or elapsed > args.budget_s
        if number % args.log_every == 0 or last:
            print(f"step {number}/{args.steps} loss {running:.4f} lr {optimizer.param_groups[0]['lr']:.2e} "
                  f"{elapsed / number:.2f} s/step {tokens / elapsed:.0f} tok/s elapsed {elapsed:.0f}s", flush=True)
        if last:
            return figures
    return figures


def measure(model, rows: list[Row], pad_id: int, args: argparse.Namespace) -> None:
    """Time a few steps (after one warm-up step) at each batch size of ``args.measure``."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-5)
    for batch_tokens in args.measure:
        stream = batches(rows, batch_tokens, args.max_rows, pad_id, random.Random(args.seed))
        times, tokens = [], 0
        for number in range(4):
            batch = next(stream)
            begin = time.monotonic()
            step(model, batch).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if number:
                times.append(time.monotonic() - begin)
                tokens += batch["input_ids"].numel()
        shape = tuple(batch["input_ids"].shape)
        print(f"batch tokens {batch_tokens}: last batch {shape}, {sum(times) / len(times):.2f} s/step, "
              f"{tokens / sum(times):.0f} tok/s", flush=True)


def save(model, output_dir: Path, settings: dict) -> None:
    """The adapter alone (safetensors) and how it was trained; its base is named by its hub id."""
    model.peft_config["default"].base_model_name_or_path = PACKAGED_MODELS[BASE].hub_id
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, safe_serialization=True)
    (output_dir / SETTINGS).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
    size = sum(f.stat().st_size for f in output_dir.iterdir())
    print(f"saved to {output_dir}: {size / 1e6:.2f} MB")


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task-types", nargs="+", default=["ynqa", "exqa", "nli"])
    parser.add_argument("--max-passage-tokens", type=int, default=128)
    parser.add_argument("--targets-per-prompt", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="prompts per passage and type")
    parser.add_argument("--batch-tokens", type=int, default=1600, help="padded tokens per batch, about")
    parser.add_argument("--max-rows", type=int, default=4, help="rows per batch at most")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=int, default=16)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--top-layers", type=int, default=10, help="LoRA on the last N layers only")
    parser.add_argument("--target-modules", nargs="+", default=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    parser.add_argument("--budget-s", type=float, default=2700, help="stop training after this many seconds")
    # One thread: on a loaded 2-core machine two threads were 4x slower than one (each waits for the other).
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--log-every", type=int, default=5)
    parser.add_argument("--measure", type=int, nargs="*", default=None,
                        help="time a few steps at each of these --batch-tokens values, then exit")
    args = parser.parse_args()

    start = time.monotonic()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    base = str(model_folder(PACKAGED_MODELS[BASE]))
    tokenizer = AutoTokenizer.from_pretrained(base)
    groups, passages = training_groups(tokenizer, args.task_types, args.max_passage_tokens,
                                       args.targets_per_prompt, args.rounds, args.seed)
    rows = encode_groups(tokenizer, groups)
    mean = sum(len(r.input_ids) for r in rows) / len(rows)
    print(f"{len(rows)} rows ({sum(len(g.targets) for g in groups)} targets) from {passages} passages of "
          f"<= {args.max_passage_tokens} tokens; tokens per row: mean {mean:.0f}, "
          f"longest {max(len(r.input_ids) for r in rows)}", flush=True)
    model = build_model(base, args)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"LoRA r={args.rank} on {args.target_modules} of the last {args.top_layers} layers: {trainable / 1e6:.2f}M trainable parameters", flush=True)
    if args.measure is not None:
        measure(model, rows, tokenizer.pad_token_id, args)
        return
    stream = batches(rows, args.batch_tokens, args.max_rows, tokenizer.pad_token_id, random.Random(args.seed))
    figures = train(model, stream, args)
    elapsed = time.monotonic() - start
    save(model, args.output_dir, {
        **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "measure"},
        "base": PACKAGED_MODELS[BASE].hub_id, "corpus_seed": CORPUS_SEED, "passages": passages,
        "rows": len(rows), "trainable_parameters": trainable, "last": figures,
        "wall_seconds": round(elapsed), "torch": torch.__version__,
    })
    print(f"total wall time {elapsed:.0f}s ({elapsed / 60:.1f} min)")


if __name__ == "__main__":
    main()

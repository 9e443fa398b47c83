"""Tokenised training examples and the deterministic order in which they are batched.

Every worker holds all examples and derives the global batch of a step from the step number
alone (a seeded permutation per epoch), then takes its own slice. So a run resumed at step
``s`` sees exactly the batches it would have seen, whatever the number of workers, and the loss
normaliser (target tokens in the global batch) is known on every worker without communication.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from bonito_ray.adapt.prompts import encode_answer, encode_prompt
from bonito_ray.self_guide.spec import TaskSpec

IGNORE_INDEX = -100  # label value that the loss skips (prompt and padding positions)


@dataclass
class Encoded:
    """Token ids of prompt + target (+ EOS) per example, and where each target starts."""

    ids: list[np.ndarray]
    prompt_lengths: list[int]

    def __len__(self) -> int:
        return len(self.ids)

    def target_tokens(self, indices: Any) -> int:
        """Number of target (loss-bearing) tokens in the examples at ``indices``."""
        return sum(len(self.ids[i]) - self.prompt_lengths[i] for i in indices)


def encode_examples(tokenizer: Any, table: pa.Table, prompt_format: str, max_length: int,
                    task: TaskSpec | None = None) -> tuple[Encoded, int]:
    """Encode ``table``'s input/output rows (of the SELF-GUIDE ``task``, if given: ``prompts``); returns the
    examples and how many were dropped as too long.

    An example longer than ``max_length`` tokens is dropped rather than truncated: a cut target
    would teach the model to stop mid-answer, a cut prompt would lose the question.
    """
    ids, prompt_lengths, dropped = [], [], 0
    for row in table.select(["input", "output"]).to_pylist():
        prompt = encode_prompt(tokenizer, row["input"], prompt_format, task)
        target = encode_answer(tokenizer, row["output"], eos=True, task=task)
        if len(prompt) + len(target) > max_length:
            dropped += 1
            continue
        ids.append(np.asarray(prompt + target, dtype=np.int64))
        prompt_lengths.append(len(prompt))
    return Encoded(ids, prompt_lengths), dropped


@dataclass(frozen=True)
class StepPlan:
    """Which examples make up the global batch of each optimizer step."""

    num_examples: int
    batch_size: int  # the effective (global) batch: per-device batch x accumulation x workers
    epochs: int
    max_steps: int | None
    seed: int

    @property
    def steps_per_epoch(self) -> int:
        """Full global batches per pass over the data (the last partial batch is dropped)."""
        return self.num_examples // self.batch_size

    @property
    def total_steps(self) -> int:
        """Optimizer steps of the whole run: ``max_steps`` when given, else ``epochs`` passes."""
        return self.max_steps if self.max_steps is not None else self.epochs * self.steps_per_epoch

    def global_batch(self, step: int) -> np.ndarray:
        """Indices of the examples of optimizer step ``step`` (0-based), over all workers."""
        epoch, offset = divmod(step, self.steps_per_epoch)
        order = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
        return order[offset * self.batch_size:(offset + 1) * self.batch_size]

    def worker_batch(self, step: int, rank: int, world_size: int) -> np.ndarray:
        """The slice of step ``step``'s global batch that worker ``rank`` of ``world_size`` trains on."""
        share = self.batch_size // world_size
        return self.global_batch(step)[rank * share:(rank + 1) * share]


def collate(encoded: Encoded, indices: Any, pad_id: int) -> dict[str, Any]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (prompt and padding ignored) tensors."""
    import torch

    longest = max(len(encoded.ids[i]) for i in indices)
    input_ids = torch.full((len(indices), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(indices), longest), dtype=torch.long)
    labels = torch.full((len(indices), longest), IGNORE_INDEX, dtype=torch.long)
    for row, i in enumerate(indices):
        ids, start = torch.tensor(encoded.ids[i]), encoded.prompt_lengths[i]  # copy: object-store arrays are read-only
        input_ids[row, :len(ids)] = ids
        attention_mask[row, :len(ids)] = 1
        labels[row, start:len(ids)] = ids[start:]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def summed_token_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Sum over target tokens of the next-token cross-entropy (a scalar tensor)."""
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), batch["labels"][:, 1:].flatten(),
                           ignore_index=IGNORE_INDEX, reduction="sum")

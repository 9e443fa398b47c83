"""Model-side scoring for evaluation, run inside Ray Data actors.

Ranked classification: each choice is scored by the sum of the log-probabilities of its tokens
given the prompt; the prediction is the highest-scoring choice. Generation (and classification
when choices are not ranked): greedy decoding of at most ``max_new_tokens`` tokens, the answer
read from it (``prompts.read_answer``). With an adapter, the actor scores every row twice, with
the adapter switched off (zero-shot) and on (adapted), from one copy of the base weights.
"""

from __future__ import annotations

import contextlib
import tempfile
from typing import Any

import pyarrow as pa

from bonito_ray.adapt.evalsets import CLASSIFICATION
from bonito_ray.adapt.prompts import encode_answer, encode_prompt, read_answer
from bonito_ray.self_guide.spec import TaskSpec

ZERO_SHOT = "zero_shot"
ADAPTED = "adapted"


def continuation_logprobs(model: Any, prompts: list[list[int]], continuations: list[list[int]], pad_id: int,
                          device: Any) -> list[float]:
    """Summed log-probability of each continuation's tokens after its prompt (one right-padded forward pass)."""
    import torch

    sequences = [p + c for p, c in zip(prompts, continuations, strict=True)]
    longest = max(map(len, sequences))
    input_ids = torch.tensor([s + [pad_id] * (longest - len(s)) for s in sequences], device=device)
    attention_mask = torch.tensor([[1] * len(s) + [0] * (longest - len(s)) for s in sequences], device=device)
    with torch.inference_mode():
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
    # Position t predicts token t + 1.
    token_logprobs = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return [float(token_logprobs[i, len(p) - 1:len(p) + len(c) - 1].sum())
            for i, (p, c) in enumerate(zip(prompts, continuations))]


def greedy_generate(model: Any, prompts: list[list[int]], max_new_tokens: int, pad_id: int, eos_id: int,
                    device: Any) -> list[list[int]]:
    """Greedy continuations (EOS and what follows removed) of left-padded prompts."""
    import torch

    longest = max(map(len, prompts))
    input_ids = torch.tensor([[pad_id] * (longest - len(p)) + p for p in prompts], device=device)
    attention_mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts], device=device)
    with torch.inference_mode():
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=pad_id, eos_token_id=eos_id)
    generated = []
    for row in out[:, longest:].tolist():
        generated.append(row[:row.index(eos_id)] if eos_id in row else row)
    return generated


class Scorer:
    """A Ray Data actor holding one base model (and adapter): scores batches of evaluation rows.

    ``ranks_choices``: classification rows by ranked choices (else generated, as generation rows are);
    ``task``: a SELF-GUIDE task spec, whose few-shot prompt goes around every input (``prompts``).
    """

    def __init__(self, model: str, adapter: str | None, prompt_format: str, max_new_tokens: int,
                 num_threads: int = 1, ranks_choices: bool = True, task: TaskSpec | None = None) -> None:
        import torch

        from bonito_ray.adapt.fsio import localize
        from bonito_ray.adapt.models import load_causal_lm
        from bonito_ray.hf_models import context_window, padded_tokenizer

        torch.set_num_threads(num_threads)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = padded_tokenizer(model)
        self.model = load_causal_lm(model, self.device).eval()
        self.variants = [ZERO_SHOT]
        if adapter:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, localize(adapter, tempfile.mkdtemp())).eval()
            self.variants.append(ADAPTED)
        self.window = context_window(self.model.config)
        self.prompt_format = prompt_format
        self.max_new_tokens = max_new_tokens
        self.ranks_choices = ranks_choices
        self.task = task

    def __call__(self, batch: pa.Table) -> pa.Table:
        """``key`` plus ``<variant>_prediction`` and ``<variant>_scores`` (choice log-probs) for each row."""
        rows = batch.to_pylist()
        prompts = [encode_prompt(self.tokenizer, r["input"], self.prompt_format, self.task) for r in rows]
        ranks = [r["kind"] == CLASSIFICATION and self.ranks_choices for r in rows]
        ranked = [i for i, rank in enumerate(ranks) if rank]
        generated = [i for i, rank in enumerate(ranks) if not rank]
        columns = {"key": pa.array([r["key"] for r in rows], pa.int64())}
        for variant in self.variants:
            predictions: list[str | None] = [None] * len(rows)
            scores: list[list[float]] = [[] for _ in rows]
            with self._variant(variant):
                for i in ranked:
                    scores[i] = self._rank(prompts[i], rows[i]["choices"])
                    predictions[i] = rows[i]["choices"][scores[i].index(max(scores[i]))]
                if generated:
                    for i, text in zip(generated, self._generate([prompts[i] for i in generated])):
                        predictions[i] = text
            columns[f"{variant}_prediction"] = pa.array(predictions, pa.string())
            columns[f"{variant}_scores"] = pa.array(scores, pa.list_(pa.float64()))
        return pa.table(columns)

    def _variant(self, variant: str) -> contextlib.AbstractContextManager:
        """The adapter off for zero-shot scoring (when there is one), else no change."""
        if variant == ZERO_SHOT and ADAPTED in self.variants:
            return self.model.disable_adapter()
        return contextlib.nullcontext()

    def _rank(self, prompt: list[int], choices: list[str]) -> list[float]:
        """Summed log-probability of each choice after ``prompt``."""
        continuations = [encode_answer(self.tokenizer, c, task=self.task) for c in choices]
        prompts = [self._fit(prompt, len(c)) for c in continuations]
        return continuation_logprobs(self.model, prompts, continuations, self.tokenizer.pad_token_id, self.device)

    def _generate(self, prompts: list[list[int]]) -> list[str]:
        """Greedy answers to ``prompts``, decoded and read (``prompts.read_answer``)."""
        fitted = [self._fit(p, self.max_new_tokens) for p in prompts]
        generated = greedy_generate(self.model, fitted, self.max_new_tokens, self.tokenizer.pad_token_id,
                                    self.tokenizer.eos_token_id, self.device)
        return [read_answer(self.tokenizer.decode(ids, skip_special_tokens=True), self.task) for ids in generated]

    def _fit(self, prompt: list[int], room: int) -> list[int]:
        """``prompt`` cut from the left so that ``room`` more tokens fit in the model's window."""
        if self.window is None or len(prompt) + room <= self.window:
            return prompt
        return prompt[-(self.window - room):]

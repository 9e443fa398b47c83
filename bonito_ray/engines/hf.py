"""The ``hf`` engine: Hugging Face transformers generation inside Ray Data actors.

One model per actor, batched with left padding, any ``AutoModelForCausalLM`` on CPU or GPU.
Sampling (temperature, top-k, top-p) is done by :class:`SeededSampler` with one random generator per
row seeded from the row's own seed, so a row's generation does not depend on which other rows
share its batch.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pyarrow as pa
from ray.data import ActorPoolStrategy

from bonito_ray import console
from bonito_ray.cluster import PRIVACY_ENV
from bonito_ray.config import GenerateConfig
from bonito_ray.engines import LENGTH, STOP, EngineStage
from bonito_ray.hf_models import compute_dtype, context_window, padded_tokenizer
from bonito_ray.progress import reporting

logger = logging.getLogger(__name__)


def build_hf_stage(config: GenerateConfig, progress=None) -> EngineStage:
    """An engine stage running ``config.model`` with transformers on ``num_replicas`` actors, which report to
    ``progress`` (``bonito_ray.progress.reporting``)."""

    def stage(requests):
        return requests.map_batches(
            reporting(HFGenerator, progress),
            fn_constructor_kwargs={"model": config.model, "num_threads": max(1, int(config.cpus_per_replica))},
            batch_size=config.batch_size,
            batch_format="pyarrow",
            compute=ActorPoolStrategy(size=config.num_replicas),
            num_cpus=config.cpus_per_replica,
            num_gpus=config.gpus_per_replica,
            accelerator_type=config.accelerator_type,
            runtime_env={"env_vars": {**PRIVACY_ENV, **console.worker_env(config.verbose)}},
        )

    return stage


def replica_gpus(config: GenerateConfig) -> float:
    """The GPUs one replica holds: ``--gpus-per-replica``."""
    return config.gpus_per_replica


class HFGenerator:
    """A Ray Data actor holding one transformers model; maps request batches to generations."""

    def __init__(self, model: str, num_threads: int = 1) -> None:
        import torch
        from transformers import AutoModelForCausalLM, GenerationConfig

        torch.set_num_threads(num_threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = padded_tokenizer(model, padding_side="left")
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=compute_dtype(self.device)).to(self.device).eval()
        # Sampling is SeededSampler's: the model's own sampling defaults (temperature, top_p) would be
        # merged into every greedy call and make transformers warn that they may be ignored.
        self.model.generation_config = GenerationConfig(
            bos_token_id=self.tokenizer.bos_token_id, eos_token_id=self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id)
        self.window = context_window(self.model.config, self.tokenizer)
        logger.info("hf engine: loaded %s on %s (window %s tokens)", model, self.device, self.window)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        encoded = [self.tokenizer(row["prompt"])["input_ids"] for row in rows]
        outputs: list[tuple[str, int, int, str | None, str | None]] = [("", len(ids), 0, None, None)
                                                                      for ids in encoded]
        runnable = []
        for i, ids in enumerate(encoded):
            if self.window is not None and len(ids) >= self.window:
                outputs[i] = ("", len(ids), 0, None, f"prompt is {len(ids)} tokens; the model's window is {self.window}")
            else:
                runnable.append(i)
        if runnable:
            texts = self._generate([encoded[i] for i in runnable], [rows[i]["sampling_params"] for i in runnable])
            for i, (text, generated, finish) in zip(runnable, texts):
                outputs[i] = (text, len(encoded[i]), generated, finish, None)
        text, n_in, n_out, finish, error = zip(*outputs)
        for name, values, kind in (("generated_text", text, pa.string()), ("num_input_tokens", n_in, pa.int64()),
                                   ("num_generated_tokens", n_out, pa.int64()), ("finish_reason", finish, pa.string()),
                                   ("engine_error", error, pa.string())):
            batch = batch.append_column(name, pa.array(values, kind))
        return batch

    def _generate(self, prompts: list[list[int]], params: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
        """(text, number of generated tokens, finish reason) for each tokenised prompt."""
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        pad, eos = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id
        longest = max(map(len, prompts))
        input_ids = torch.tensor([[pad] * (longest - len(p)) + p for p in prompts], device=self.device)
        attention_mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        max_new = max(p["max_tokens"] for p in params)
        if self.window is not None:
            max_new = min(max_new, self.window - longest)  # as vLLM does: generation stops at the window
        generation_config = GenerationConfig(do_sample=False, max_new_tokens=max_new, pad_token_id=pad,
                                             eos_token_id=eos, bos_token_id=self.tokenizer.bos_token_id)
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                      generation_config=generation_config,
                                      logits_processor=LogitsProcessorList([SeededSampler(params, self.device)]))
        results = []
        for row, p in zip(out[:, longest:].tolist(), params):
            tokens = row[: p["max_tokens"]]
            if eos is not None and eos in tokens:
                tokens = tokens[: tokens.index(eos) + 1]
            # No end of sequence: cut at max_tokens, or at the window (max_new) as vLLM would be.
            finish = STOP if eos is not None and tokens and tokens[-1] == eos else LENGTH
            results.append((self.tokenizer.decode(tokens, skip_special_tokens=True), len(tokens), finish))
        return results


class SeededSampler:
    """A logits processor that samples each row with its own temperature, top-k, top-p and generator.

    It returns scores that are -inf everywhere but at the sampled token, so that greedy
    decoding in ``generate`` picks exactly that token. Temperature 0 means greedy.
    """

    def __init__(self, params: list[dict[str, Any]], device: str) -> None:
        import torch

        self.params = params
        self.generators = []
        for p in params:
            seed = p.get("seed")
            generator = torch.Generator(device=device)
            generator.manual_seed(int(seed) if seed is not None else int.from_bytes(os.urandom(4), "little"))
            self.generators.append(generator)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        choices = scores.argmax(dim=-1)
        for i, (p, generator) in enumerate(zip(self.params, self.generators)):
            if p["temperature"] > 0:
                probs = torch.softmax(scores[i].float() / p["temperature"], dim=-1)
                sorted_probs, order = probs.sort(descending=True)
                outside = sorted_probs.cumsum(0) - sorted_probs >= p["top_p"]  # the top token always stays
                sorted_probs[outside] = 0
                if p.get("top_k"):  # as vLLM: the top-k cut and the top-p cut both apply
                    sorted_probs[int(p["top_k"]):] = 0
                choices[i] = order[torch.multinomial(sorted_probs, 1, generator=generator)]
        forced = torch.full_like(scores, float("-inf"))
        forced[torch.arange(scores.shape[0]), choices] = 0
        return forced

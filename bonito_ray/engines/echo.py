"""The ``echo`` engine: a zero-cost stand-in for a model, for tests and benchmarks only.

It answers every request with a fixed Bonito-format generation built from the passage's first
words, so that the rest of the pipeline (read, prompt, parse, write) can be exercised and
measured without any model. It produces no real tasks: never use it for a dataset.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from bonito_ray.config import GenerateConfig
from bonito_ray.engines import EngineStage
from bonito_ray.prompt import CONTEXT_PLACEHOLDER, SEPARATOR


def build_echo_stage(config: GenerateConfig) -> EngineStage:
    """An engine stage that echoes a parseable generation for every request."""

    def stage(requests):
        return requests.map_batches(echo_generations, batch_format="pyarrow", batch_size=config.batch_size * 64)

    return stage


def echo_generations(batch: pa.Table) -> pa.Table:
    """Add the engine output columns with a canned generation per row."""
    answers = pc.utf8_slice_codeunits(pc.utf8_trim_whitespace(batch["context"]), 0, 40)
    text = pc.binary_join_element_wise(
        f"{CONTEXT_PLACEHOLDER}\nWhat does the passage above begin with?\n{SEPARATOR}\n", answers, ""
    )
    n = batch.num_rows
    return (
        batch.append_column("generated_text", text)
        .append_column("num_input_tokens", pc.cast(pc.utf8_length(batch["prompt"]), pa.int64()))
        .append_column("num_generated_tokens", pc.cast(pc.utf8_length(text), pa.int64()))
        .append_column("engine_error", pa.nulls(n, pa.string()))
    )

"""The ``echo`` engine: a zero-cost stand-in for a model, for tests and benchmarks only.

It answers every request with a fixed generation built from the passage's first words, in the answer
format of the job's generator (``Generator.answer_layout``: Bonito's, or the instruct tags), so that
the rest of the pipeline (read, prompt, parse, validate, write) can be exercised and measured
without any model: a question on which words come first from word k of the passage (k: the sample
index, so that samples differ), answered with six words from there (a span), or for the label types
(``validators.OPTION_TYPES``) a yes-no question on those words answered "Yes", so that the strict
validators and task dedup keep it. It produces no real tasks: never use it for a dataset.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from bonito_ray.config import GenerateConfig
from bonito_ray.engines import STOP, EngineStage
from bonito_ray.generators import DEFAULT_GENERATOR, GENERATORS
from bonito_ray.progress import reporting
from bonito_ray.prompt import CONTEXT_PLACEHOLDER
from bonito_ray.validators import OPTION_TYPES

WORDS = r"^\s*(?:\S+\s+){{{skip}}}(?P<words>\S+(?:\s+\S+){{0,5}})"  # six words from word `skip`: a span


def build_echo_stage(config: GenerateConfig, progress=None) -> EngineStage:
    """An engine stage that echoes a parseable generation for every request (each batch reported to ``progress``)."""

    def stage(requests):
        return requests.map_batches(reporting(echo_generations, progress), batch_format="pyarrow",
                                    batch_size=config.batch_size * 64,
                                    fn_kwargs={"generator": config.generator})

    return stage


def echo_generations(batch: pa.Table, generator: str = DEFAULT_GENERATOR) -> pa.Table:
    """Add the engine output columns with a canned generation per row, in ``generator``'s answer format."""
    before, between, after = GENERATORS[generator].answer_layout
    words = _words(batch)
    span = pc.binary_join_element_wise(
        f"{before}{CONTEXT_PLACEHOLDER}\nWhich words of the passage above come first from word ",
        pc.cast(pc.add(batch["sample_index"], 1), pa.string()), f" on?{between}", words, after, "")
    yes = pc.binary_join_element_wise(
        f'{before}{CONTEXT_PLACEHOLDER}\nDoes the passage above hold "', words,
        f'"? Yes or no?{between}Yes{after}', "")
    text = pc.if_else(pc.is_in(batch["task_type"], value_set=pa.array(sorted(OPTION_TYPES))), yes, span)
    n = batch.num_rows
    return (
        batch.append_column("generated_text", text)
        .append_column("num_input_tokens", pc.cast(pc.utf8_length(batch["prompt"]), pa.int64()))
        .append_column("num_generated_tokens", pc.cast(pc.utf8_length(text), pa.int64()))
        .append_column("finish_reason", pa.array([STOP] * n, pa.string()))
        .append_column("engine_error", pa.nulls(n, pa.string()))
    )


def _words(batch: pa.Table) -> pa.Array:
    """Six words of each passage from word ``sample_index`` on (or its first ones): samples differ, as a model's."""
    first = pc.struct_field(pc.extract_regex(batch["context"], WORDS.format(skip=0)), [0])
    words = first
    for k in sorted(set(batch["sample_index"].to_pylist()) - {0}):
        later = pc.struct_field(pc.extract_regex(batch["context"], WORDS.format(skip=k)), [0])
        words = pc.if_else(pc.and_(pc.equal(batch["sample_index"], k), pc.is_valid(later)), later, words)
    return words

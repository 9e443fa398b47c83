"""Every reason bonito-ray sets a row aside, the stage that does it, and the writing of those rows.

Nothing is dropped silently: each row a stage does not pass on is written, with its reason and a
detail, under ``_rejects/stage=<stage>/`` of the output (``bonito_ray.schema`` holds the layout and
the stages), and counted by reason in the summary, the manifest and the card. ``REASONS`` is the one
list of bonito-ray's own reasons, each with the stages that use it (SELF-GUIDE's filters use some
of the passage filters' names); a user's validator may add others (stage ``validation``).

Stages before the engine cannot pass rejected rows down the stream (the engine would see them), so
they write them with ``write_rejects``. Each file is named by a hash of its rows, so a retried task
rewrites the same file rather than adding a copy, and counts are taken over unique rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pyarrow.dataset as pds
import pyarrow.fs as pafs

from bonito_ray.schema import (CHUNK_STAGE, CLEAN_STAGE, CORPUS_STAGE, GENERATION_STAGE, REJECT_SCHEMA,
                               REJECTS_SUFFIX, SELF_GUIDE_INPUT_STAGE, SELF_GUIDE_SAMPLE_STAGE, SELF_GUIDE_VOTE_STAGE,
                               STAGING_DIR, TASK_DEDUP_STAGE, VALIDATION_STAGE, rejects_dir, stable_id,
                               table_from_rows)
from bonito_ray.storage import join, resolve_filesystem, write_parquet


@dataclass(frozen=True)
class Reason:
    """Why a row was set aside: its name (the ``reason`` column), the stage, and what it means."""

    name: str
    stage: str
    meaning: str


REASONS: dict[tuple[str, str], Reason] = {}  # (stage, name) -> the reason


def _reason(name: str, stage: str, meaning: str) -> str:
    REASONS[stage, name] = Reason(name, stage, meaning)
    return name


def _also(name: str, stages: tuple[str, ...], meaning: str) -> str:
    """``name``, a reason of other stages too, with what it means there."""
    for stage in stages:
        _reason(name, stage, meaning)
    return name


# stage=corpus: records and files of the input (bonito_ray.corpus)
INVALID_JSON = _reason("invalid_json", CORPUS_STAGE, "a JSONL line that is not JSON")
INVALID_UTF8 = _reason("invalid_utf8", CORPUS_STAGE, "a line, file, file name or value that is not UTF-8, or a context "
                                                         "holding a lone surrogate (a JSON escape such as \\ud800)")
NOT_AN_OBJECT = _reason("not_an_object", CORPUS_STAGE, "a JSONL line that is not a JSON object")
MISSING_CONTEXT_COLUMN = _reason("missing_context_column", CORPUS_STAGE, "a record without the context column")
NULL_CONTEXT = _reason("null_context", CORPUS_STAGE, "a record whose context is null")
NON_STRING_CONTEXT = _reason("non_string_context", CORPUS_STAGE, "a record whose context is not a string")
EMPTY_CONTEXT = _reason("empty_context", CORPUS_STAGE, "a record whose context is empty")
UNREADABLE_FILE = _reason("unreadable_file", CORPUS_STAGE, "corrupt, or not a file the listing could open")
TRUNCATED_FILE = _reason("truncated_file", CORPUS_STAGE,
                         "a compressed stream cut short: the records before the cut are kept")
MISSING_FILE = _reason("missing_file", CORPUS_STAGE, "listed, then gone when read")
EMPTY_FILE = _reason("empty_file", CORPUS_STAGE, "a file that holds no record (0 bytes, or blank lines only)")
UNSUPPORTED_FORMAT = _reason("unsupported_format", CORPUS_STAGE,
                            "a file of a format bonito-ray does not read, or not a regular file")
HIDDEN_FILE = _reason("hidden_file", CORPUS_STAGE,
                      'a name starting with "." or "_" (a directory: with all it holds)')
DUPLICATE_PATH = _reason("duplicate_path", CORPUS_STAGE,
                         "a link to a file or directory already listed (symlink loops included)")
# stage=clean: passages (bonito_ray.passages, bonito_ray.dedup)
TOO_SHORT = _reason("too_short", CLEAN_STAGE, "a passage under --min-passage-chars")
TOO_LONG = _reason("too_long", CLEAN_STAGE, "a passage over --max-passage-chars")
CONTROL_MARKER = _reason("control_marker", CLEAN_STAGE,
                        "a passage holding one of the generator's markers (Bonito's, or instruct's tags), named")
SPECIAL_TOKEN = _reason("special_token", CLEAN_STAGE, "a passage holding a special-token string of the model, named")
NO_VISIBLE_TEXT = _reason("no_visible_text", CLEAN_STAGE, "only whitespace and control/format characters")
DUPLICATE = _reason("duplicate", CLEAN_STAGE, "the same text as a passage kept before it")
# stage=chunk: not a drop, counted (its text is kept in the chunk before it)
MERGED_TAIL = _reason("merged_tail", CHUNK_STAGE, "a short last chunk merged into the chunk before it")
# stage=generation: what the engine returned (bonito_ray.prompt, bonito_ray.generators, bonito_ray.engine_rows)
NO_SEPARATOR = _reason("no_separator", GENERATION_STAGE, "a generation without <|pipe|> between input and output")
MULTIPLE_SEPARATORS = _reason("multiple_separators", GENERATION_STAGE, "a generation with more than one <|pipe|>")
NO_INPUT_TAG = _reason("no_input_tag", GENERATION_STAGE, "an instruct generation without an <input> part")
NO_OUTPUT_TAG = _reason("no_output_tag", GENERATION_STAGE, "an instruct generation without an <output> part after its "
                                                          "input")
MULTIPLE_TASKS = _reason("multiple_tasks", GENERATION_STAGE, "an instruct generation with more than one <input> or "
                                                            "<output>")
MISPLACED_TAG = _reason("misplaced_tag", GENERATION_STAGE, "an instruct generation whose input or output holds a "
                                                          "stray answer tag (a </output> before the <output>)")
EMPTY_INPUT = _reason("empty_input", GENERATION_STAGE, "a generation whose task input is empty")
EMPTY_OUTPUT = _reason("empty_output", GENERATION_STAGE, "a generation whose task output is empty")
ENGINE_ERROR = _reason("engine_error", GENERATION_STAGE, "a request the engine refused (e.g. over the window)")
# stage=validation: parsed tasks (bonito_ray.validators)
TRUNCATED = _reason("truncated", VALIDATION_STAGE, "the generation hit --max-tokens (or the window) without ending")
DEGENERATE = _reason("degenerate", VALIDATION_STAGE,
                     "an output with no letter or digit, or a long run of one repeated token")
PASSAGE_MISSING = _reason("passage_missing", VALIDATION_STAGE,
                          "the input does not hold the passage ({{context}} was not there)")
NOT_A_SPAN = _reason("not_a_span", VALIDATION_STAGE, "an extractive answer that is not a span of the passage")
NOT_AN_OPTION = _reason("not_an_option", VALIDATION_STAGE, "an answer that is none of the options its input offers")
NOT_YES_NO = _reason("not_yes_no", VALIDATION_STAGE, "a yes-no task answered with something else")
# stage=task_dedup (bonito_ray.task_dedup)
DUPLICATE_TASK = _reason("duplicate_task", TASK_DEDUP_STAGE, "the same (or a near-identical) task as one kept before it")
# SELF-GUIDE (bonito_ray.self_guide): its filters drop generated inputs and annotation samples alike
_FILTERED = (SELF_GUIDE_INPUT_STAGE, SELF_GUIDE_SAMPLE_STAGE)
EMPTY_TEXT = _also("empty", _FILTERED, "an empty text")
_also(TOO_SHORT, _FILTERED, "shorter than the demonstrations' mean length less length_std standard deviations")
_also(TOO_LONG, _FILTERED, "longer than the demonstrations' mean length plus length_std standard deviations")
NOISE = _also("noise", _FILTERED, "a chatty assistant phrase or a template word (input, output)")
_also(DUPLICATE, (SELF_GUIDE_INPUT_STAGE,), "the same text as an input kept before it")
NEAR_DEMONSTRATION = _reason("near_demonstration", SELF_GUIDE_INPUT_STAGE,
                             "a near copy of a demonstration's input: the Jaccard similarity of their word sets is "
                             "at least near_duplicate_threshold")
NEAR_DUPLICATE_INPUT = _reason("near_duplicate_input", SELF_GUIDE_INPUT_STAGE,
                               "a near copy of an input kept before it: the Jaccard similarity of their word sets is "
                               "at least near_duplicate_threshold")
_also(ENGINE_ERROR, _FILTERED, "a request the engine refused (over the window; openai: an error answer, or retries "
                               "spent)")
NOT_A_LABEL = _reason("not_a_label", SELF_GUIDE_SAMPLE_STAGE, "classification: an annotation holding none of the labels")
NO_VALID_OUTPUT = _reason("no_valid_output", SELF_GUIDE_VOTE_STAGE, "an input none of whose annotations passed the filters")
NO_MAJORITY = _reason("no_majority", SELF_GUIDE_VOTE_STAGE,
                      "an input whose most common annotation's share is under consistency_threshold")
CLASS_BALANCE = _reason("class_balance", SELF_GUIDE_VOTE_STAGE, "classification: cut to the smallest label's count")


def reasons_of(stage: str) -> tuple[str, ...]:
    """bonito-ray's own reasons of ``stage``, in the order above."""
    return tuple(reason.name for reason in REASONS.values() if reason.stage == stage)


GENERATION_REASONS = reasons_of(GENERATION_STAGE)


def write_rejects(output_uri: str, stage: str, rows: list[dict], s3_endpoint: str | None = None) -> None:
    """Write reject rows (REJECT_SCHEMA fields) of a pre-engine ``stage`` under the run's staging dir;
    ``output_uri`` empty: a run that writes nothing (``generate --preview``)."""
    if not rows or not output_uri:
        return
    fs, output = resolve_filesystem(output_uri, s3_endpoint)
    root = join(output, STAGING_DIR)
    name = stable_id(*sorted(f"{r.get('source')}#{r.get('position')}#{r.get('passage_id')}#{r['reason']}"
                             for r in rows))
    write_parquet(fs, join(root, rejects_dir(stage), f"rejects-{name}{REJECTS_SUFFIX}"),
                  table_from_rows(rows, REJECT_SCHEMA))


def reject_counts(fs: pafs.FileSystem, root: str, stage: str) -> Counter:
    """Counts by reason of the unique rows that ``stage`` set aside in the dataset at ``root``."""
    directory = join(root, rejects_dir(stage))
    if fs.get_file_info(directory).type == pafs.FileType.NotFound:
        return Counter()
    table = pds.dataset(directory, filesystem=fs, format="parquet").to_table(
        columns=["source", "position", "passage_id", "reason"])
    return Counter(reason for *_, reason in set(zip(*(table[c].to_pylist() for c in table.column_names))))

"""Export a generated dataset to the files other trainers read.

Formats (file written under the output directory):

- ``alpaca`` (``alpaca.json``, a JSON array) and ``alpaca-jsonl`` (``alpaca.jsonl``):
  ``{"instruction": input, "input": "", "output": output}``. The task input already holds the
  passage, so Alpaca's optional ``input`` field stays empty.
- ``messages`` (``messages.jsonl``): OpenAI chat fine-tuning lines, one user and one assistant turn.
- ``prompt-completion`` (``prompt_completion.jsonl``): ``{"prompt", "completion"}`` with the
  paper's plain prompt, for trainers (e.g. TRL) that put the loss on the completion only.

A SELF-GUIDE dataset's rows hold the task's bare inputs; every format gets what ``finetune`` trains on
(``bonito_ray.adapt.prompts``): the task's few-shot prompt (instruction, demonstrations, the input in an
open output slot) where a Bonito task's input goes, and the slot's answer (closing quote included) as
the output.

``dataset_info.json`` registers the Alpaca and messages files with LLaMA-Factory.

``_export.json`` records the files an export wrote, before it writes them: a later export may replace
those, and refuses an output holding anything else (bonito_ray.ownership), or lying in the dataset.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bonito_ray.adapt.data import example_task_types, iter_examples, self_guide_task
from bonito_ray.adapt.errors import AdaptError
from bonito_ray.adapt.prompts import answer_text, plain_text, prompt_text
from bonito_ray.output import check_no_overlap
from bonito_ray.ownership import read_record, refuse_foreign_files
from bonito_ray.self_guide.spec import TaskSpec
from bonito_ray.storage import join, resolve_filesystem, write_bytes

ExportRecord = dict[str, object]


def alpaca_record(row: dict, task: TaskSpec | None) -> ExportRecord:
    """One Alpaca record: the task input is the instruction."""
    return {"instruction": prompt_text(row["input"], task), "input": "", "output": answer_text(row["output"], task)}


def messages_record(row: dict, task: TaskSpec | None) -> ExportRecord:
    """One OpenAI chat fine-tuning record."""
    return {"messages": [{"role": "user", "content": prompt_text(row["input"], task)},
                         {"role": "assistant", "content": answer_text(row["output"], task)}]}


def prompt_completion_record(row: dict, task: TaskSpec | None) -> ExportRecord:
    """One prompt/completion record in the paper's plain prompt format."""
    return {"prompt": plain_text(row["input"], task), "completion": answer_text(row["output"], task)}


@dataclass(frozen=True)
class ExportFormat:
    """A file format: its file name, how a row (of a SELF-GUIDE task, or None) becomes a record, and whether
    it is one JSON array."""

    file_name: str
    record: Callable[[dict, TaskSpec | None], ExportRecord]
    json_array: bool = False


FORMATS: dict[str, ExportFormat] = {
    "alpaca": ExportFormat("alpaca.json", alpaca_record, json_array=True),
    "alpaca-jsonl": ExportFormat("alpaca.jsonl", alpaca_record),
    "messages": ExportFormat("messages.jsonl", messages_record),
    "prompt-completion": ExportFormat("prompt_completion.jsonl", prompt_completion_record),
}
DATASET_INFO_FILE = "dataset_info.json"
RECORD_FILE = "_export.json"  # {"written": [the files of the exports made here]}


@dataclass
class ExportSummary:
    """What an export wrote: every data file holds all ``rows`` examples."""

    output: str
    rows: int
    files: list[str] = field(default_factory=list)

    def format(self) -> str:
        """A short human-readable report."""
        return "\n".join([f"exported {self.rows} examples to {self.output}:", *(f"  {f}" for f in self.files)])


def dataset_info(name: str, formats: Iterable[str]) -> dict[str, dict]:
    """LLaMA-Factory ``dataset_info.json`` entries for the Alpaca and messages files among ``formats``."""
    formats = set(formats)
    entries: dict[str, dict] = {}
    alpaca = next((f for f in ("alpaca", "alpaca-jsonl") if f in formats), None)
    if alpaca:
        entries[f"{name}_alpaca"] = {
            "file_name": FORMATS[alpaca].file_name,
            "formatting": "alpaca",
            "columns": {"prompt": "instruction", "query": "input", "response": "output"},
        }
    if "messages" in formats:
        entries[f"{name}_messages"] = {
            "file_name": FORMATS["messages"].file_name,
            "formatting": "sharegpt",
            "columns": {"messages": "messages"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                     "assistant_tag": "assistant", "system_tag": "system"},
        }
    return entries


def parse_formats(formats: str | Iterable[str] | None) -> list[str]:
    """Format names from a comma-separated string or list; None means all of them."""
    if formats is None:
        return list(FORMATS)
    names = [f.strip() for f in (formats.split(",") if isinstance(formats, str) else formats) if f.strip()]
    unknown = [f for f in names if f not in FORMATS]
    if unknown or not names:
        raise AdaptError(f"unknown export format(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(FORMATS)}")
    return list(dict.fromkeys(names))


def export(dataset: str, output: str, formats: str | Iterable[str] | None = None,
           task_types: list[str] | None = None, name: str = "bonito") -> ExportSummary:
    """Write the accepted examples of ``dataset`` to ``output`` in ``formats`` plus ``dataset_info.json``.

    One streaming pass over the dataset writes every format, so memory stays flat whatever its size.
    """
    chosen = parse_formats(formats)
    task = self_guide_task(dataset, example_task_types(dataset, task_types))
    rows = iter_examples(dataset, task_types)
    first = next(rows)  # checks the dataset (layout, columns, not empty) before any output is created
    check_no_overlap(dataset, output)
    fs, root = resolve_filesystem(output)
    info = dataset_info(name, chosen)
    files = [FORMATS[f].file_name for f in chosen] + ([DATASET_INFO_FILE] if info else [])
    _claim(fs, root, output, files)
    summary = ExportSummary(output=output, rows=0, files=[FORMATS[f].file_name for f in chosen])
    with contextlib.ExitStack() as stack:
        writers = [_RecordWriter(stack.enter_context(fs.open_output_stream(join(root, FORMATS[f].file_name))),
                                 FORMATS[f], task) for f in chosen]
        for row in itertools.chain([first], rows):
            for writer in writers:
                writer.write(row)
            summary.rows += 1
        for writer in writers:
            writer.finish()
    if info:
        with fs.open_output_stream(join(root, DATASET_INFO_FILE)) as stream:
            stream.write(json.dumps(info, indent=2).encode("utf-8"))
        summary.files.append(DATASET_INFO_FILE)
    return summary


def _claim(fs, root: str, output: str, files: list[str]) -> None:
    """Refuse an output holding what no export of ours wrote; record ``files`` as ours before writing them."""
    record = read_record(fs, join(root, RECORD_FILE), {"written"}) or {"written": []}
    earlier = {f for f in record["written"] if isinstance(f, str)}
    refuse_foreign_files(fs, root, output, lambda f: f == RECORD_FILE or f in earlier, "export output")
    fs.create_dir(root, recursive=True)
    write_bytes(fs, join(root, RECORD_FILE), json.dumps({"written": sorted(earlier | set(files))}).encode("utf-8"))


class _RecordWriter:
    """Writes one format's records to an open stream: JSON lines, or one JSON array with a record per line."""

    def __init__(self, stream: Any, fmt: ExportFormat, task: TaskSpec | None) -> None:
        self.stream, self.fmt, self.task, self.count = stream, fmt, task, 0
        if fmt.json_array:
            stream.write(b"[\n")

    def write(self, row: dict) -> None:
        """Append the record of ``row``."""
        record = json.dumps(self.fmt.record(row, self.task), ensure_ascii=False).encode("utf-8")
        if self.fmt.json_array:
            self.stream.write((b",\n" if self.count else b"") + record)
        else:
            self.stream.write(record + b"\n")
        self.count += 1

    def finish(self) -> None:
        """End the array (JSON array formats); the stream itself is closed by its owner."""
        if self.fmt.json_array:
            self.stream.write(b"\n]\n")

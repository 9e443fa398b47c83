"""The dataset card: a README.md in the Hugging Face dataset-card format, with its plots.

Written at every commit (``bonito_ray.commit``, step 5, after the manifest) from the committed
files and the manifest, so it always describes the whole dataset (an incremental dataset's card
covers every run that built it). Rewriting it is idempotent: a commit rolled forward writes it again.

    OUTPUT/_card/README.md      YAML header (configs, license, size_categories) and the body: how the
                                dataset was made, figures per task type, plots, optional samples
    OUTPUT/_card/yield.png      accepted and rejected (by reason) per task type   } matplotlib,
    OUTPUT/_card/lengths.png    generated and prompt token lengths per task type  } the `card` extra,
                                                                                    drawn by ``card_plots``
    OUTPUT/.huggingface.yaml    the header again, where ``datasets.load_dataset(OUTPUT, "ynqa")`` reads it

The card is not ``OUTPUT/README.md``: every directory reader of OUTPUT reads each file not starting
with ``_`` or ``.`` as Parquet, and would fail on it (see ``bonito_ray.schema``). To publish on the
Hugging Face Hub, upload OUTPUT and then ``_card/README.md`` as the repository's README.md.

Figures are counted from the files, never from a list of known reasons: every ``_rejects/stage=*``
row that names a task type counts against it under its own reason, so a stage or a reason added
later shows up by itself. Passage text (inputs, outputs) stays out of the card unless samples are asked for.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.fs as pafs
import yaml

from bonito_ray import job_kind
from bonito_ray.model_cache import BUILT_MODELS, cache_root
from bonito_ray.schema import (ACCEPTED_FILE_PREFIX, CARD_DIR, CARD_FILE, HF_YAML_FILE, PARQUET_SUFFIX, REJECTS_DIR,
                               accepted_dir, is_accepted_file, is_data_file, stable_id)
from bonito_ray.storage import join, list_files, write_bytes

logger = logging.getLogger(__name__)

PLOTS = ("yield.png", "lengths.png")
PLOTS_HINT = ("plots need matplotlib: `pip install 'bonito-ray[card]'`, then `bonito-ray stats OUTPUT --write-card` "
              "draws them and rewrites this card")
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))


@dataclass
class TaskFigures:
    """What one task type's prompts became; token histograms are counts per length (index = tokens)."""

    task_type: str
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> rows, from every reject stage
    generated_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    input_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def prompts(self) -> int:
        return self.accepted + sum(self.rejected.values())

    @property
    def yield_(self) -> float:
        return self.accepted / self.prompts if self.prompts else 0.0


def collect(fs: pafs.FileSystem, root: str) -> dict[str, TaskFigures]:
    """Figures per task type (sorted by name) of the committed dataset at ``root``, batch by batch."""
    figures: dict[str, TaskFigures] = {}
    for path in list_files(fs, root):
        relative = path[len(root) + 1 :]
        if is_accepted_file(relative):
            task_type = relative.partition("/")[0]
            _add_accepted(fs, path, figures.setdefault(task_type, TaskFigures(task_type)))
    rejects = [f for f in list_files(fs, join(root, REJECTS_DIR)) if is_data_file(f)]
    if rejects:
        table = pds.dataset(rejects, filesystem=fs, format="parquet").to_table(
            columns=["task_type", "reason"], filter=pc.is_valid(pc.field("task_type")))
        for row in table.group_by(["task_type", "reason"]).aggregate([("reason", "count")]).to_pylist():
            task = figures.setdefault(row["task_type"], TaskFigures(row["task_type"]))
            task.rejected[row["reason"]] = task.rejected.get(row["reason"], 0) + row["reason_count"]
    return dict(sorted(figures.items()))


def _add_accepted(fs: pafs.FileSystem, path: str, task: TaskFigures) -> None:
    for batch in pds.dataset([path], filesystem=fs, format="parquet").to_batches(
            columns=["num_generated_tokens", "num_input_tokens"]):
        task.accepted += batch.num_rows
        task.generated_tokens = _histogram(task.generated_tokens, batch.column(0))
        task.input_tokens = _histogram(task.input_tokens, batch.column(1))


def _histogram(counts: np.ndarray, values) -> np.ndarray:
    values = values.drop_null().to_numpy(zero_copy_only=False).astype(np.int64).clip(min=0)
    more = np.bincount(values, minlength=len(counts))
    counts = np.pad(counts, (0, max(0, len(more) - len(counts))))
    return counts + more


def quantiles(counts: np.ndarray, qs=(0.5, 0.95)) -> tuple[int, ...]:
    """The ``qs`` quantiles and the maximum of a histogram of counts per length; () when empty."""
    total = int(counts.sum())
    if total == 0:
        return ()
    cumulative = np.cumsum(counts)
    return (*(int(np.searchsorted(cumulative, q * total)) for q in qs), int(np.flatnonzero(counts)[-1]))


def size_category(rows: int) -> str:
    """The Hugging Face ``size_categories`` value for ``rows`` examples."""
    return next((name for limit, name in _SIZES if rows < limit), "n>1B")


def header(figures: dict[str, TaskFigures], license_: str) -> dict[str, Any]:
    """The card's YAML header: a config per task type (its folder) and ``default`` with all of them."""
    def files(task_types) -> list[str]:
        return [f"{accepted_dir(t)}/{ACCEPTED_FILE_PREFIX}*{PARQUET_SUFFIX}" for t in task_types]

    present = [name for name, task in figures.items() if task.accepted]
    configs = [{"config_name": "default", "default": True,
                "data_files": [{"split": "train", "path": files(present)}]}]
    configs += [{"config_name": name, "data_files": [{"split": "train", "path": files([name])}]} for name in present]
    return {"license": license_, "size_categories": [size_category(sum(t.accepted for t in figures.values()))],
            "task_categories": ["text-generation"], "tags": ["synthetic", "bonito", "bonito-ray"],
            "configs": configs}


def sample_rows(fs: pafs.FileSystem, root: str, task_type: str, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` examples of ``task_type`` chosen by a hash of (seed, id): the same whatever the file order."""
    files = [f for f in list_files(fs, join(root, accepted_dir(task_type)))
             if is_accepted_file(f[len(root) + 1 :])]
    if not files or n <= 0:
        return []
    dataset = pds.dataset(files, filesystem=fs, format="parquet")
    ids = dataset.to_table(columns=["id"])["id"].to_pylist()
    chosen = sorted(ids, key=lambda i: stable_id(seed, i))[:n]
    rows = dataset.to_table(columns=["id", "input", "output"], filter=pc.field("id").isin(chosen)).to_pylist()
    return sorted(rows, key=lambda r: stable_id(seed, r["id"]))


def render(figures: dict[str, TaskFigures], manifest: dict[str, Any], *, plots: bool,
           samples: dict[str, list[dict[str, Any]]] | None = None) -> str:
    """The card's text (README.md): YAML header, how it was made, figures, plots, samples."""
    config, summary = manifest["config"], manifest["summary"]
    head = yaml.safe_dump(header(figures, config.get("license", "other")), sort_keys=False)
    lines = [f"---\n{head}---", "", "# Synthetic instruction-tuning tasks made with bonito-ray", "",
             job_kind.kind_of(config).intro(config), "", "## How it was made", "",
             "| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in provenance(manifest)), "",
             "## Figures", "",
             f"{summary['passages']} passages, {summary['prompts']} prompts, "
             f"{sum(summary['accepted'].values())} accepted. Corpus records rejected: "
             f"{_counts(summary['corpus_rejected'])}. Passages dropped: {_counts(summary['passages_dropped'])}.", "",
             *figures_table(figures), ""]
    if plots:
        lines += ["![accepted and rejected prompts per task type](yield.png)", "",
                  "![token lengths per task type](lengths.png)", ""]
    else:
        lines += [f"No plots: {PLOTS_HINT}.", ""]
    if samples:
        lines += ["## Samples", "", "Chosen at random (by a hash of the example id); they hold passage text.", ""]
        for task_type, rows in samples.items():
            lines += [f"### {task_type}", ""]
            for row in rows:
                lines += [f"`{row['id']}` input:", "", _fenced(row["input"]), "", "output:", "",
                          _fenced(row["output"]), ""]
    return "\n".join(lines)


def model_name(model: str) -> str:
    """The model as its reader knows it, from the folder the manifest records (what was loaded, kept there for
    the job's identity): a bundled model by its path in the package (``bonito_ray/demo_model``), wherever the
    package was installed; a model in bonito-ray's cache by the name ``--model`` took (``bonito-ray model``);
    anything else (a hub id, the user's own folder) as it is."""
    path, package = Path(model), Path(__file__).parent
    if not path.is_absolute():
        return model
    if path.parent.name == package.name and (package / path.name).is_dir():
        return f"{package.name}/{path.name}"
    if path.parent == cache_root() / "models":  # a packaged model's folder is its name; a built one's, name-digest
        return next((name for name in BUILT_MODELS if path.name.startswith(f"{name}-")), path.name)
    return model


def provenance(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(what, value) rows saying how the dataset was made, in the words of the job type that made it."""
    return job_kind.kind_of(manifest["config"]).provenance(manifest)


def figures_table(figures: dict[str, TaskFigures]) -> list[str]:
    """The figures per task type as a Markdown table."""
    lines = ["| task type | prompts | accepted | rejected | yield | rejects by reason | generated tokens "
             "(median / p95 / max) | prompt tokens (median / p95 / max) |", "|---|---|---|---|---|---|---|---|"]
    for task in figures.values():
        lines.append(f"| {task.task_type} | {task.prompts} | {task.accepted} | {sum(task.rejected.values())} | "
                     f"{task.yield_:.1%} | {_counts(task.rejected)} | {_spread(task.generated_tokens)} | "
                     f"{_spread(task.input_tokens)} |")
    return lines


def draw_plots(figures: dict[str, TaskFigures]) -> dict[str, bytes] | None:
    """The card's PNG plots by file name (``bonito_ray.card_plots``); None when matplotlib is not installed
    (the `card` extra)."""
    try:
        import matplotlib  # noqa: F401  (asked for by name: card_plots may be imported already)
    except ImportError:
        return None
    from bonito_ray import card_plots

    return card_plots.draw(figures)


def write_card(fs: pafs.FileSystem, root: str, manifest: dict[str, Any]) -> None:
    """Write the card, its plots and ``.huggingface.yaml`` for the committed dataset at ``root``."""
    figures = collect(fs, root)
    plots = draw_plots(figures)
    if plots is None:
        logger.info("dataset card without plots: %s", PLOTS_HINT)
    for name, data in (plots or {}).items():
        write_bytes(fs, join(root, CARD_DIR, name), data)
    count = int(manifest["config"].get("card_samples") or 0)
    samples = {t: sample_rows(fs, root, t, count) for t in figures if figures[t].accepted} if count else None
    text = render(figures, manifest, plots=plots is not None, samples=samples)
    write_bytes(fs, join(root, CARD_DIR, CARD_FILE), text.encode("utf-8"))
    write_bytes(fs, join(root, HF_YAML_FILE),
                yaml.safe_dump(header(figures, manifest["config"].get("license", "other")), sort_keys=False).encode())


def _spread(counts: np.ndarray) -> str:
    return " / ".join(map(str, quantiles(counts))) or "-"


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items())) or "none"


def _fenced(text: str) -> str:
    fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", text or "")), default=0))
    return f"{fence}text\n{text}\n{fence}"

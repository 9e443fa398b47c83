"""The dataset card's two plots, drawn to be read (matplotlib, the `card` extra; ``bonito_ray.card`` calls them).

    yield.png    one stacked bar per task type: accepted, then rejected by reason. Each bar's count and
                 share accepted stand in a column right of the bars, and the legend (with each reason's total)
                 right of that, so neither covers a bar, however short a segment or long a bar.
    lengths.png  one small histogram per task type and length (generated tokens, prompt tokens), a row per
                 task type: types never overlap, however alike their lengths. Panels of a column share their
                 bins (whole lengths each, a readable width from the column's range and examples) and x axis,
                 so rows compare;
                 each panel's count axis has integer ticks, and its title gives the median, p95 and maximum.

Both use constrained layout (matplotlib places titles, labels and the legend without overlap) and grow with
the number of task types and reasons. No pyplot: no GUI backend, no global state. The PNG bytes depend on
the figures alone (no software or date metadata), so rewriting a card rewrites the same plots.
"""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from bonito_ray.card import PLOTS, TaskFigures, quantiles

ACCEPTED_COLOR = "#2ca02c"
# tab20 without its two greens, so no reason reads as "accepted"; past 18 reasons the colours repeat hatched.
REASON_COLORS = ("#d62728", "#ff9896", "#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#9467bd", "#c5b0d5",
                 "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#c7c7c7", "#bcbd22", "#dbdb8d",
                 "#17becf", "#9edae5")
HATCHES = ("", "///", "...", "xxx")
LENGTH_COLUMNS = (("generated_tokens", "generated tokens per accepted example", "#1f77b4"),
                  ("input_tokens", "prompt tokens per accepted example", "#ff7f0e"))
MAX_BINS, MIN_BINS = 40, 5  # about Rice's rule's number of bins (2 n^1/3) over a column's range, within these
MIN_SPAN = 10  # tokens: a column whose lengths all lie closer shows this much around them
FONT = 8
STEPS = (1, 2, 5, 10)  # tick steps a reader counts in (never 6, 12, 18)


def _thousands(value, _position=None) -> str:
    return f"{value:,.0f}"


def yield_figure(figures: dict[str, TaskFigures]) -> Figure:
    """Accepted and rejected (by reason) prompts per task type, as stacked horizontal bars."""
    names = list(figures)
    reasons = sorted({r for t in figures.values() for r in t.rejected})
    legend_columns = 1 if len(reasons) < 18 else 2
    legend_rows = math.ceil((1 + len(reasons)) / legend_columns)
    height = 1.2 + max(0.32 * max(1, len(names)), 0.2 * legend_rows)
    figure = Figure(figsize=(10, height), layout="constrained")
    ax = figure.subplots()
    rows = np.arange(len(names))
    left = np.zeros(len(names))
    series = [("accepted", [figures[n].accepted for n in names], ACCEPTED_COLOR, "")]
    series += [(reason, [figures[n].rejected.get(reason, 0) for n in names], REASON_COLORS[i % len(REASON_COLORS)],
                HATCHES[i // len(REASON_COLORS) % len(HATCHES)]) for i, reason in enumerate(reasons)]
    for label, values, color, hatch in series:
        ax.barh(rows, values, left=left, height=0.7, color=color, hatch=hatch, edgecolor="white", linewidth=0.5,
                label=f"{label} ({_thousands(sum(values))})")
        left += values
    ax.set_yticks(rows, labels=names, fontsize=FONT)
    ax.set_ylim(max(1, len(names)) - 0.5, -0.5)  # the first task type on top, as in the figures table
    # The share accepted of each bar, in a column of its own right of the axes: never over a bar or the legend.
    shares = ax.secondary_yaxis("right")
    shares.set_yticks(rows, labels=[share_label(figures[n]) for n in names], fontsize=FONT)
    shares.tick_params(length=0)
    ax.set_xlim(0, max(left.max(initial=0), 1) * 1.01)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=STEPS))
    ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.tick_params(axis="x", labelsize=FONT)
    ax.set_xlabel("prompts", fontsize=FONT)
    ax.set_title("prompts per task type: accepted, and rejected by reason", fontsize=10, loc="left")
    if not names:
        ax.text(0.5, 0.5, "no prompts", transform=ax.transAxes, ha="center", va="center", fontsize=FONT)
    figure.legend(*ax.get_legend_handles_labels(), loc="outside right upper", fontsize=FONT,
                  ncols=legend_columns, title="prompts (total)", title_fontsize=FONT, frameon=False)
    return figure


def share_label(task: TaskFigures) -> str:
    """``2,999 of 3,000 accepted (>99%)``: a share rounds to 0% or 100% only when it is exactly that."""
    share = f"{task.yield_:.0%}"
    if 0 < task.accepted < task.prompts and share in ("0%", "100%"):
        share = "<1%" if share == "0%" else ">99%"
    return f"{task.accepted:,} of {task.prompts:,} accepted ({share})"


def bin_edges(histograms: list[np.ndarray]) -> np.ndarray | None:
    """Bin edges over the lengths the histograms (counts per length) hold, shared by their panels: about as
    many bins as the largest panel's examples ask for (Rice's rule, 2 n^1/3, from ``MIN_BINS`` to ``MAX_BINS``;
    a wide range with few examples would be all gaps in 1-token bins) of a readable width (1, 2, 5, 10,
    20, 25, 50 ... tokens), each holding the whole lengths from a multiple of the width
    (10-token bins: 0-9, 10-19 ...); None when all are empty. Lengths are whole numbers, so the edges lie
    half-way between them (9.5, 19.5 ...): a 1-token bin is centred on its length, as is the median's line."""
    present = [np.flatnonzero(h) for h in histograms if h.sum()]
    if not present:
        return None
    low, high = min(int(p[0]) for p in present), max(int(p[-1]) for p in present)
    target = min(MAX_BINS, max(MIN_BINS, math.ceil(2 * max(int(h.sum()) for h in histograms) ** (1 / 3))))
    width = _readable_step(math.ceil((high - low + 1) / target))
    start, stop = low // width * width, (high // width + 1) * width
    return np.arange(start, stop + 1, width) - 0.5


def _readable_step(at_least: int) -> int:
    scale = 1
    while True:
        for step in (1, 2, 5, 10, 20, 25, 50):
            if step * scale >= at_least:
                return step * scale
        scale *= 100


def rebin(counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per length summed into the bins between ``edges`` (``bin_edges``)."""
    start, stop, width = (int(edges[0] + 0.5), int(edges[-1] + 0.5), int(edges[1] - edges[0]))
    padded = np.zeros(stop, dtype=np.int64)
    padded[: min(len(counts), stop)] = counts[:stop]
    return padded[start:].reshape(-1, width).sum(axis=1)


def lengths_figure(figures: dict[str, TaskFigures]) -> Figure:
    """Histograms of generated and prompt token lengths: a row of two panels per task type."""
    names = list(figures) or ["(no task types)"]
    figure = Figure(figsize=(10, 0.9 + 1.05 * len(names)), layout="constrained")
    axes = figure.subplots(len(names), 2, sharex="col", squeeze=False)
    for column, (attribute, title, color) in enumerate(LENGTH_COLUMNS):
        histograms = {n: getattr(figures[n], attribute) for n in figures}
        edges = bin_edges(list(histograms.values()))
        for row, name in enumerate(names):
            ax = axes[row, column]
            counts = histograms.get(name, np.zeros(0, dtype=np.int64))
            _length_panel(ax, name, counts, edges, color)
            ax.tick_params(labelbottom=True, labelsize=FONT)  # every panel keeps its token ticks
        bins = f"{int(edges[1] - edges[0])}-token bins, " if edges is not None else ""
        axes[-1, column].set_xlabel(f"{title} ({bins}dashed line: median)", fontsize=FONT)
        if edges is not None:
            middle, span = (edges[0] + edges[-1]) / 2, max(edges[-1] - edges[0], MIN_SPAN)
            axes[0, column].set_xlim(middle - span / 2, middle + span / 2)
            axes[0, column].xaxis.set_major_locator(MaxNLocator(integer=True, steps=STEPS))
            axes[0, column].xaxis.set_major_formatter(FuncFormatter(_thousands))
    figure.supylabel("accepted examples", fontsize=FONT)
    return figure


def _length_panel(ax, name: str, counts: np.ndarray, edges: np.ndarray | None, color: str) -> None:
    total = int(counts.sum())
    if not total or edges is None:
        ax.set_title(f"{name}: no accepted examples", fontsize=FONT, loc="left")
        ax.set_yticks([])
        return
    ax.stairs(rebin(counts, edges), edges, fill=True, color=color)
    median, p95, maximum = quantiles(counts)
    ax.axvline(median, color="black", linestyle="--", linewidth=0.8)
    ax.set_title(f"{name}: {total:,} example{'s' * (total != 1)}; median {median:,}, p95 {p95:,}, "
                 f"max {maximum:,}", fontsize=FONT, loc="left")
    ax.set_ylim(0, None)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=3, integer=True, steps=STEPS))  # counts: 0, 1, 2, never 0.25
    ax.yaxis.set_major_formatter(FuncFormatter(_thousands))


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes that depend on its content alone."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def draw(figures: dict[str, TaskFigures]) -> dict[str, bytes]:
    """The card's PNG plots by file name."""
    return dict(zip(PLOTS, (png(yield_figure(figures)), png(lengths_figure(figures)))))

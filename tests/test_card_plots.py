"""The dataset card's plots as a reader sees them: nothing covers a bar or a label, counts have integer ticks,
every task type has its bar and its panels, bins follow the data; on a realistic dataset, on one with every
task type and more reasons than colours, and on a tiny one. Figures are built as ``card.collect`` builds them."""

import functools
import itertools
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the plots need the `card` extra (matplotlib)")

from bonito_ray import card, card_plots  # noqa: E402
from bonito_ray.tasks import TASK_TYPES  # noqa: E402

REASONS = ("not_a_span", "truncated", "no_separator", "passage_missing", "duplicate_task", "empty_output",
           "degenerate", "not_yes_no", "multiple_separators", "engine_error", "empty_input", "not_an_option")


def lengths_histogram(rng: np.random.Generator, rows: int, median: float, spread: float, cap: int) -> np.ndarray:
    """Counts per token length (as ``card.collect`` keeps them) of ``rows`` lengths, log-normal, capped."""
    lengths = np.clip(rng.lognormal(np.log(median), spread, rows).astype(np.int64), 1, cap)
    return np.bincount(lengths)


def task(rng: np.random.Generator, name: str, accepted: int, rejected: dict[str, int], median: float,
         prompt_median: float) -> card.TaskFigures:
    """A task type's figures; its generated lengths capped at a max_tokens of 256 (a truncation spike)."""
    if not accepted:
        return card.TaskFigures(name, 0, dict(rejected))
    return card.TaskFigures(name, accepted, dict(rejected), lengths_histogram(rng, accepted, median, 0.5, 256),
                            lengths_histogram(rng, accepted, prompt_median, 0.3, 2048))


def realistic() -> dict[str, card.TaskFigures]:
    """Five task types, thousands of rows each, a dozen reject reasons (one of them a single row)."""
    rng = np.random.default_rng(0)
    sizes = {"exqa": 3100, "nli": 2900, "qg": 3050, "summarization": 2700, "ynqa": 3000}
    figures = {}
    for i, (name, prompts) in enumerate(sizes.items()):
        rejected = {r: int(rng.integers(0, prompts // (20 + 10 * j))) for j, r in enumerate(REASONS[i:i + 8])}
        rejected = {r: n for r, n in rejected.items() if n}
        if name == "ynqa":
            rejected = {"not_yes_no": 1}  # a 1-row segment at the end of the longest bar (the issue's)
        figures[name] = task(rng, name, prompts - sum(rejected.values()), rejected, 40 + 30 * i, 350 + 40 * i)
    return figures


def every_task_type() -> dict[str, card.TaskFigures]:
    """All 16 task types, 24 reasons (more than the palette's colours), one type with nothing accepted."""
    rng = np.random.default_rng(1)
    reasons = [*REASONS, *(f"custom_reason_{i}" for i in range(12))]
    figures = {}
    for i, name in enumerate(sorted(TASK_TYPES)):
        rejected = {reasons[(i + j) % len(reasons)]: int(rng.integers(1, 60)) for j in range(6)}
        figures[name] = task(rng, name, 0 if name == "wsd" else int(rng.integers(50, 4000)), rejected,
                             20 + 10 * i, 300 + 20 * i)
    return figures


def tiny() -> dict[str, card.TaskFigures]:
    """Four rows, two task types with identical lengths (the issue's overlapping lines), one reject."""
    return {"exqa": card.TaskFigures("exqa", 1, {"not_a_span": 1}, np.bincount([12]), np.bincount([300])),
            "ynqa": card.TaskFigures("ynqa", 2, {}, np.bincount([12, 12]), np.bincount([300, 301]))}


def one_type_one_row() -> dict[str, card.TaskFigures]:
    return {"ynqa": card.TaskFigures("ynqa", 1, {}, np.bincount([3]), np.bincount([77]))}


DATASETS = {"realistic": realistic, "every_task_type": every_task_type, "tiny": tiny,
            "one_type_one_row": one_type_one_row}


READABLE_WIDTHS = (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000)


def drawn(figure):
    """The figure laid out and drawn by Agg, the renderer its PNG comes from, and that renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return figure, canvas.get_renderer()


@functools.cache
def drawn_plot(plot: str, dataset: str):
    """``drawn`` of a plot (``yield`` or ``lengths``) of a dataset, once per test session (the 16-row
    lengths figure takes seconds): tests only read it."""
    draw = {"yield": card_plots.yield_figure, "lengths": card_plots.lengths_figure}[plot]
    return drawn(draw(DATASETS[dataset]()))


def tick_labels(axis) -> list:
    """The tick labels drawn (either side: a right-hand axis draws ``label2``), of ticks in the axis's view."""
    low, high = sorted(axis.get_view_interval())
    return [label for tick in axis.get_major_ticks() if low - 1e-9 <= tick.get_loc() <= high + 1e-9
            for label in (tick.label1, tick.label2) if label.get_visible() and label.get_text()]


def visible_texts(figure) -> list:
    """Texts drawn: every axis's tick labels in view, its title and labels, the figure's labels and legend."""
    found = []
    for ax in [*figure.axes, *(child for ax in figure.axes for child in ax.child_axes)]:
        for axis in (ax.xaxis, ax.yaxis):
            found += tick_labels(axis)
            found.append(axis.label)
        found += [ax.title, ax._left_title, ax._right_title, *ax.texts]
        if ax.get_legend():
            found += [*ax.get_legend().get_texts(), ax.get_legend().get_title()]
    for legend in figure.legends:
        found += [*legend.get_texts(), legend.get_title()]
    found += [t for t in (figure._supylabel, figure._supxlabel, figure._suptitle) if t is not None]
    return [t for t in found if t.get_visible() and t.get_text().strip()]


def overlap(a, b, slack: float = 0.5) -> bool:
    """Whether two window extents share more than a hairline."""
    return (min(a.x1, b.x1) - max(a.x0, b.x0)) > slack and (min(a.y1, b.y1) - max(a.y0, b.y0)) > slack


def crowded(texts: list, renderer) -> list[tuple[str, str]]:
    """The pairs of texts that overlap."""
    extents = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(extents, 2) if overlap(box_a, box_b)]


def bars(figure) -> list:
    return [p for ax in figure.axes for p in ax.patches if p.get_visible()]


@pytest.mark.parametrize("dataset", DATASETS)
def test_yield_legend_and_labels_cover_no_bar_and_no_text(dataset):
    figures = DATASETS[dataset]()
    figure, renderer = drawn_plot("yield", dataset)
    legend = figure.legends[0].get_window_extent(renderer)
    shown = visible_texts(figure)
    assert not [p for p in bars(figure) if overlap(p.get_window_extent(renderer), legend)]
    assert not [t.get_text() for t in shown if overlap(t.get_window_extent(renderer), legend)
                and t not in figure.legends[0].get_texts() and t is not figure.legends[0].get_title()]
    assert crowded(shown, renderer) == []
    page = figure.bbox
    assert all(page.x0 - 1 <= e.x0 and e.x1 <= page.x1 + 1 and page.y0 - 1 <= e.y0 and e.y1 <= page.y1 + 1
               for e in (t.get_window_extent(renderer) for t in shown)), "a text runs off the image"
    for p in bars(figure):  # no bar runs under the share labels right of the axes
        assert p.get_window_extent(renderer).x1 <= figure.axes[0].get_window_extent(renderer).x1 + 1


@pytest.mark.parametrize("dataset", DATASETS)
def test_yield_names_each_task_types_share_accepted_and_each_reasons_total(dataset):
    figures = DATASETS[dataset]()
    figure, _ = drawn_plot("yield", dataset)
    main, shares = figure.axes[0], figure.axes[0].child_axes[0]
    assert [t.get_text() for t in tick_labels(main.yaxis)] == list(figures)
    shown = [t.get_text() for t in tick_labels(shares.yaxis)]
    assert [s.partition(" (")[0] for s in shown] == [f"{t.accepted:,} of {t.prompts:,} accepted"
                                                     for t in figures.values()]
    for label, t in zip(shown, figures.values()):  # the share, rounded, but never to 100% or 0% falsely
        share = label.partition(" (")[2].rstrip(")")
        if share.startswith((">", "<")):
            assert 0 < t.accepted < t.prompts and round(100 * t.accepted / t.prompts) in (0, 100)
        else:
            assert int(share.rstrip("%")) == round(100 * t.accepted / t.prompts)
    totals = {"accepted": sum(t.accepted for t in figures.values())}
    for t in figures.values():
        for reason, rows in t.rejected.items():
            totals[reason] = totals.get(reason, 0) + rows
    assert sorted(t.get_text() for t in figure.legends[0].get_texts()) == sorted(
        f"{r} ({n:,})" for r, n in totals.items())
    # Each bar's segments add up to its task type's prompts (the bars are read against the x axis).
    ends = {}
    for p in main.patches:
        row = round(p.get_y() + p.get_height() / 2)
        ends[row] = max(ends.get(row, 0), p.get_x() + p.get_width())
    assert [ends[i] for i in range(len(figures))] == [t.prompts for t in figures.values()]
    assert all(float(t.get_text().replace(",", "")).is_integer() for t in tick_labels(main.xaxis))


def test_yield_colours_tell_every_reason_from_accepted_and_from_each_other():
    figures = every_task_type()
    reasons = {r for t in figures.values() for r in t.rejected}
    assert len(reasons) > len(card_plots.REASON_COLORS)  # more reasons than colours: hatches tell them apart
    figure, _ = drawn_plot("yield", "every_task_type")
    handles = figure.legends[0].legend_handles
    looks = [(tuple(h.get_facecolor()), h.get_hatch() or "") for h in handles]
    assert len(set(looks)) == len(looks) == 1 + len(reasons)
    accepted_colour = looks[0][0]
    assert all(colour != accepted_colour for colour, _ in looks[1:])


@pytest.mark.parametrize("dataset", DATASETS)
def test_lengths_has_each_task_types_panels_integer_count_ticks_and_no_overlap(dataset):
    figures = DATASETS[dataset]()
    figure, renderer = drawn_plot("lengths", dataset)
    panels = [ax for ax in figure.axes]
    assert len(panels) == 2 * len(figures)
    for (name, t), row in zip(figures.items(), np.reshape(panels, (-1, 2))):
        for ax, counts in zip(row, (t.generated_tokens, t.input_tokens)):
            assert ax.get_title(loc="left").startswith(f"{name}:")
            labels = [lab.get_text().replace(",", "") for lab in tick_labels(ax.yaxis)]
            assert all(float(lab).is_integer() for lab in labels), (name, labels)
            if t.accepted:
                drawn_counts = ax.patches[0].get_data().values
                assert drawn_counts.sum() == counts.sum() == t.accepted  # every example in a bin, once
                assert len(labels) >= 2 and max(map(float, labels)) <= drawn_counts.max() * 1.5 + 1
            else:
                assert "no accepted examples" in ax.get_title(loc="left") and not ax.patches
    shown = visible_texts(figure)
    assert crowded(shown, renderer) == []
    page = figure.bbox
    assert all(page.x0 - 1 <= e.x0 and e.x1 <= page.x1 + 1 and page.y0 - 1 <= e.y0 and e.y1 <= page.y1 + 1
               for e in (t.get_window_extent(renderer) for t in shown)), "a text runs off the image"


@pytest.mark.parametrize("dataset", DATASETS)
def test_length_bins_are_integer_aligned_and_sized_to_the_data(dataset):
    figures = DATASETS[dataset]()
    figure, _ = drawn_plot("lengths", dataset)
    for column, attribute in enumerate(("generated_tokens", "input_tokens")):
        histograms = [getattr(t, attribute) for t in figures.values() if t.accepted]
        low = min(int(np.flatnonzero(h)[0]) for h in histograms)
        high = max(int(np.flatnonzero(h)[-1]) for h in histograms)
        column_edges = set()
        for ax in figure.axes[column::2]:
            if ax.patches:
                edges = ax.patches[0].get_data().edges
                column_edges.add(tuple(edges))
                widths = np.diff(edges)
                holds = edges + 0.5  # a bin holds the whole lengths from holds[i] to holds[i + 1] - 1
                assert np.all(holds == np.round(holds)) and len(set(widths)) == 1  # whole lengths, equal widths
                assert holds[0] % widths[0] == 0  # aligned on multiples of the width
                assert holds[0] <= low and high < holds[-1]  # every length in a bin
                # Rice's rule's number of bins for the largest panel, within bounds: the narrowest readable
                # width that gives no more than that, so neither 1-token spikes nor a few wide blocks.
                examples = max(t.accepted for t in figures.values())
                target = min(card_plots.MAX_BINS, max(card_plots.MIN_BINS, np.ceil(2 * examples ** (1 / 3))))
                assert (high - low + 1) / widths[0] <= target
                narrower = [w for w in READABLE_WIDTHS if w < widths[0]]
                assert widths[0] in READABLE_WIDTHS and (not narrower or (high - low + 1) / narrower[-1] > target)
        assert len(column_edges) == 1, "panels of a column share their bins"


def test_bins_of_a_wide_range_are_a_readable_width_and_a_narrow_one_single_tokens():
    many = np.bincount(np.linspace(3, 1999, 8000).astype(int))  # Rice: 2 * 8000^1/3 = 40 bins
    wide = card_plots.bin_edges([many])
    assert wide[0] == -0.5 and wide[-1] == 1999.5 and set(np.diff(wide)) == {50}
    few = card_plots.bin_edges([np.bincount([3, 1999])])  # two examples: a handful of bins, not 40 gaps
    assert list(few) == [-0.5, 499.5, 999.5, 1499.5, 1999.5]
    narrow = card_plots.bin_edges([np.bincount([12, 12]), np.bincount([15])])
    assert list(narrow) == [11.5, 12.5, 13.5, 14.5, 15.5]
    assert card_plots.bin_edges([np.zeros(0, int)]) is None
    counts = np.bincount([3, 49, 50, 1999])
    assert list(card_plots.rebin(counts, wide)) == [2, 1, *[0] * 37, 1]


def test_plots_are_the_same_bytes_each_time_the_card_is_rewritten():
    first, second = card.draw_plots(tiny()), card.draw_plots(tiny())
    assert set(first) == set(card.PLOTS) and first == second
    assert all(data[:8] == b"\x89PNG\r\n\x1a\n" for data in first.values())


@pytest.mark.static
def test_the_docs_show_each_plot_small_enough_to_keep_in_the_repository():
    docs = Path(__file__).parent.parent / "docs"
    page = (docs / "card.md").read_text()
    shown = re.findall(r"!\[[^\]]*\]\((images/[^)]+\.png)\)", page)
    assert len(shown) == len(card.PLOTS)
    for image in shown:
        data = (docs / image).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 100_000, image


def test_a_dataset_with_nothing_accepted_draws_and_says_so():
    for figures in ({}, {"ynqa": card.TaskFigures("ynqa", 0, {"truncated": 2})}):
        plots = card.draw_plots(figures)
        assert set(plots) == set(card.PLOTS)
        lengths, _ = drawn(card_plots.lengths_figure(figures))
        assert all(ax.get_title(loc="left").endswith("no accepted examples") for ax in lengths.axes)

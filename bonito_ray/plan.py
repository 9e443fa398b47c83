"""The planner's arithmetic: a corpus's counts, from all of it or a sample of its files, turned into tokens,
wall time, GPU-hours and cost (pure functions; ``bonito-ray plan``, see docs/plan.md).

- **Sample.** The unit is the corpus file (``choose_sample``): a sampled file is read whole. A total is the
  sample's figure per byte times the corpus's bytes (a ratio estimator: files of any size), with a 95%
  interval from the per-file variance about that ratio (``estimate_total``). A corpus read whole is exact.
- **Output tokens.** Each request generates at most ``--max-tokens``: an upper bound. A calibration run
  (``bonito_ray.plan_calibrate``) measures the mean per request, with its own 95% interval.
- **Throughput.** Measured by the calibration: jobs of two sizes on the configured engine, one replica; the
  difference of their wall times over the difference of their output tokens is the replica's rate, and what is
  left of a job's time is its own start-up (``fit_rate``; the first job in a process has the start-up of a
  ``generate`` command, ``Calibration``). Otherwise a published figure (``PUBLISHED_THROUGHPUT``, the one table
  of them, each with its source), labelled as such; otherwise unknown, and only token counts are given.
- **Time and cost.** Wall time = Ray's start + a job's start-up + output tokens / (rate x replicas), replicas
  assumed to scale ideally; GPU-hours = wall hours x replicas x GPUs per replica (what a cluster holding them
  pays); cost = GPU-hours x ``--gpu-hour-price``. Replicas that hold no GPU (hf or vLLM on CPUs) count
  replica-hours instead, and the price is taken per replica-hour.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any

# Student's t at 0.975 for 1..30 degrees of freedom (then the normal's 1.96, 2% low at 30): few sampled files
# or calibration prompts give a wider interval than the normal's.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(degrees_of_freedom: int) -> float:
    """The two-sided 95% quantile of Student's t with ``degrees_of_freedom`` (>= 1)."""
    return _T975[degrees_of_freedom - 1] if degrees_of_freedom <= len(_T975) else 1.96


@dataclass(frozen=True)
class PublishedFigure:
    """A published vLLM output-token throughput of one model on one GPU: the fallback when none is measured."""

    model: str  # as the source names it
    names: tuple[str, ...]  # substrings of --model (lowercased) that are this model (or a fine-tune of it)
    gpu: str  # as the source names it
    accelerator_types: tuple[str, ...]  # --accelerator-type values (Ray's names) that are this GPU
    output_tokens_per_s: float
    source: str


_LAMBDA = ("Lambda Labs, 'LLMs inference benchmarks, using vLLM, on Lambda Cloud' (2024), "
           "https://github.com/LambdaLabsML/vllm-benchmark/blob/main/benchmark_v0.md")
# The one table of published figures. Each is one replica on one GPU, served by vLLM at saturation
# (benchmark_serving.py, requests sent at once); Bonito's prompts are shorter than those, so they are a guide.
# BatsResearch/bonito-v1 is Mistral-7B-v0.1 fine-tuned: the same architecture and size as the figure's v0.3.
PUBLISHED_THROUGHPUT: tuple[PublishedFigure, ...] = (
    PublishedFigure("Mistral-7B-Instruct-v0.3", ("mistral-7b", "bonito-v1"), "1x A100-80GB SXM",
                    ("A100-80G", "A100"), 1591.4,
                    f"{_LAMBDA}: vLLM 0.5.4, 320 prompts, data-parallel table, 1xA100-80GB-SXM"),
    PublishedFigure("Mistral-7B-Instruct-v0.3", ("mistral-7b", "bonito-v1"), "1x H100-80GB SXM",
                    ("H100",), 3281.19,
                    f"{_LAMBDA}: vLLM 0.5.4, 320 prompts, data-parallel table, 1xH100-80GB-SXM"),
    PublishedFigure("Llama-3.1-8B", ("llama-3.1-8b",), "1x H100-80GB SXM", ("H100",), 8088.35,
                    f"{_LAMBDA}: vLLM 0.6.0 with multi-step scheduling (num-scheduler-steps 10), 5,000 prompts, "
                    "max-num-seqs 256; the release: https://blog.vllm.ai/2024/09/05/perf-update.html"),
)


def published_throughput(model: str, engine_published: bool, accelerator_type: str | None,
                         gpus_per_replica: float) -> PublishedFigure | None:
    """The published figure for ``model`` on ``accelerator_type``, or None; only for an engine whose figures they
    are (``engine_published``: vLLM's, ``bonito_ray.engines.Engine.published_figures``) and one GPU per replica."""
    if not engine_published or gpus_per_replica != 1 or not accelerator_type:
        return None
    name = model.lower()
    for figure in PUBLISHED_THROUGHPUT:
        if accelerator_type.upper() in figure.accelerator_types and any(n in name for n in figure.names):
            return figure
    return None


@dataclass(frozen=True)
class FileCount:
    """What one corpus file gives, as the job would count it."""

    path: str
    bytes: int
    documents: int = 0
    records_rejected: int = 0  # records that are no document (invalid JSON, empty text, ...)
    passages: int = 0  # prompted: cleaned, chunked, deduplicated
    duplicates: int = 0  # passages whose text came before (in this plan's reading order)
    requests: int = 0  # passages x task types x n
    input_tokens: int = 0  # the prompts' tokens, each request's


COUNTED = ("documents", "records_rejected", "passages", "duplicates", "requests", "input_tokens")


@dataclass(frozen=True)
class Figure:
    """An estimate and its 95% interval (both ends equal: exact)."""

    estimate: float
    low: float
    high: float

    @classmethod
    def exact(cls, value: float) -> "Figure":
        return cls(value, value, value)

    def scaled(self, factor: float) -> "Figure":
        return Figure(self.estimate * factor, self.low * factor, self.high * factor)

    def plus(self, value: float) -> "Figure":
        return Figure(self.estimate + value, self.low + value, self.high + value)

    @property
    def relative_half_width(self) -> float:
        return (self.high - self.low) / 2 / self.estimate if self.estimate else 0.0

    @property
    def is_exact(self) -> bool:
        return self.low == self.high


def choose_sample(files: list[str], sample: int | None, seed: int) -> list[str]:
    """``sample`` of ``files`` at random (``seed``), in listing order; all of them when ``sample`` is None or more."""
    if sample is None or sample >= len(files):
        return list(files)
    chosen = set(random.Random(seed).sample(files, sample))
    return [f for f in files if f in chosen]


def estimate_total(values: list[float], sizes: list[float], total_size: float, population: int) -> Figure:
    """The corpus total of a quantity, from the ``values`` of ``len(values)`` files sampled at random out of
    ``population``, whose sizes are ``sizes`` (bytes) out of ``total_size``: the ratio estimator and its 95%
    interval (without-replacement variance about the ratio; Cochran, Sampling Techniques, 6.3). Exact when every
    file was read; one file sampled gives no interval (low 0, high infinite)."""
    n = len(values)
    if n == population:
        return Figure.exact(float(sum(values)))
    sampled_size = sum(sizes)
    ratio = sum(values) / sampled_size if sampled_size else 0.0
    estimate = ratio * total_size
    seen = float(sum(values))  # what the sample holds is in the corpus for sure
    if n < 2:
        return Figure(estimate, seen, math.inf)
    residuals = sum((v - ratio * s) ** 2 for v, s in zip(values, sizes)) / (n - 1)
    variance = population ** 2 * (1 - n / population) / n * residuals
    half = t975(n - 1) * math.sqrt(variance)
    return Figure(estimate, max(seen, estimate - half), estimate + half)


def mean_with_interval(values: list[float]) -> Figure:
    """The mean of ``values`` and its 95% interval (t); one value: no interval."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Figure(mean, 0.0, math.inf)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return Figure(mean, max(0.0, mean - half), mean + half)


def product(a: Figure, b: Figure) -> Figure:
    """``a`` x ``b``, independent estimates: relative half-widths add in quadrature."""
    estimate = a.estimate * b.estimate
    if a.is_exact and b.is_exact:
        return Figure.exact(estimate)
    half = estimate * math.hypot(a.relative_half_width, b.relative_half_width)
    return Figure(estimate, max(a.low * b.low, estimate - half), estimate + half)


@dataclass(frozen=True)
class Run:
    """One calibration job: its prompts, the output tokens they generated, and its wall time."""

    prompts: int
    output_tokens: int
    seconds: float


@dataclass(frozen=True)
class Rate:
    """One replica's throughput: ``output_tokens_per_s`` after a job's ``startup_s`` (its planning, reading, the
    engine's start and the commit); ``fitted``: from two sizes (else an all-in rate, start-up in it); ``how``."""

    output_tokens_per_s: float
    startup_s: float
    fitted: bool
    how: str


def fit_rate(small: Run, large: Run) -> Rate:
    """The rate of a replica from two jobs of different sizes: the difference of their times over the difference
    of their output tokens, and the smaller job's time less its tokens' share as a job's start-up. Where the
    difference says nothing (the same tokens, or the larger job no slower on a busy machine), the larger job's
    all-in rate, start-up included in it."""
    tokens, seconds = large.output_tokens - small.output_tokens, large.seconds - small.seconds
    if tokens > 0 and seconds > 0:
        rate = tokens / seconds
        startup = max(0.0, small.seconds - small.output_tokens / rate)
        return Rate(rate, startup, True, f"difference of 2 jobs ({small.prompts} and {large.prompts} prompts)")
    return all_in_rate(large, "the larger job was no slower: its generation is within the jobs' start-up noise; "
                              "a larger --calibrate measures the rate; times are upper bounds")


def all_in_rate(run: Run, why: str = "one job") -> Rate:
    """A job's output tokens over its whole time: its start-up is in the rate, not apart (``why``)."""
    rate = run.output_tokens / run.seconds if run.seconds > 0 else 0.0
    return Rate(rate, 0.0, False, f"all-in rate of a job of {run.prompts} prompts, start-up included ({why})")


@dataclass(frozen=True)
class Calibration:
    """What the calibration jobs measured.

    ``first``: the first job, in the process as a ``bonito-ray generate`` command starts it (its start-up holds
    the first imports and worker starts besides the engine's); ``small`` and ``large``: the same small job again
    and a large one, after it, whose difference is the rate (``fit_rate``); None when the passages were too few
    for two sizes. ``output_tokens_per_request``: over the large job's requests (else the first's).
    ``ray_start_s``: Ray's start, 0 when the plan found it running."""

    first: Run
    small: Run | None
    large: Run | None
    output_tokens_per_request: Figure
    ray_start_s: float

    @property
    def runs(self) -> tuple[Run, ...]:
        return tuple(run for run in (self.first, self.small, self.large) if run is not None)

    @property
    def rate(self) -> Rate:
        if self.small is None or self.large is None:
            return all_in_rate(self.first, "too few passages for two sizes")
        return fit_rate(self.small, self.large)

    @property
    def first_startup_s(self) -> float:
        """The start-up of a job that is the first in its process: what a ``bonito-ray generate`` command pays."""
        rate = self.rate
        if not rate.fitted:
            return 0.0
        return max(0.0, self.first.seconds - self.first.output_tokens / rate.output_tokens_per_s)


@dataclass(frozen=True)
class Throughput:
    """The throughput an estimate is made at: measured (``calibration``) or ``published``."""

    output_tokens_per_s: float  # one replica's
    startup_s: float  # a job's own start-up, besides Ray's, as the first job in its process
    ray_start_s: float
    source: str  # "calibration" or "published"
    detail: str
    startup_after_first_s: float = 0.0  # a job's start-up in a process that has run one (the Python API's calls)


def throughput_of(calibration: Calibration | None, published: PublishedFigure | None) -> Throughput | None:
    """The measured throughput, else the published one, else None (unknown)."""
    if calibration is not None and calibration.rate.output_tokens_per_s > 0:
        rate = calibration.rate
        return Throughput(rate.output_tokens_per_s, calibration.first_startup_s, calibration.ray_start_s,
                          "calibration", rate.how, rate.startup_s)
    if published is not None:
        return Throughput(published.output_tokens_per_s, 0.0, 0.0, "published",
                          f"published figure, not measured: {published.model} on {published.gpu}; "
                          f"source: {published.source}; start-up not included")
    return None


@dataclass(frozen=True)
class Costing:
    """Wall time, device-hours and cost of a run."""

    wall_seconds: Figure
    device_hours: Figure  # GPU-hours, or replica-hours for replicas that hold no GPU
    unit: str  # "GPU-hours" or "replica-hours"
    cost: Figure | None  # None: no price given


def costing(output_tokens: Figure, throughput: Throughput, replicas: int, gpus_per_replica: float,
            gpu_hour_price: float | None) -> Costing:
    """Wall time = Ray's start + a job's start-up + ``output_tokens`` / (rate x ``replicas``); device-hours =
    wall hours x replicas x GPUs per replica (x 1 replica-hour each when they hold no GPU); cost at the price."""
    generation = output_tokens.scaled(1.0 / (throughput.output_tokens_per_s * replicas))
    wall = generation.plus(throughput.ray_start_s + throughput.startup_s)
    per_hour = replicas * (gpus_per_replica if gpus_per_replica > 0 else 1)
    hours = wall.scaled(per_hour / 3600)
    cost = None if gpu_hour_price is None else hours.scaled(gpu_hour_price)
    return Costing(wall, hours, "GPU-hours" if gpus_per_replica > 0 else "replica-hours", cost)


@dataclass
class Plan:
    """A plan: what was read, the corpus's totals, the output tokens, the throughput and what follows."""

    input: str
    model: str
    engine: str
    generator: str
    task_types: list[str]
    n: int
    max_tokens: int
    files_total: int
    bytes_total: int
    files_read: int
    bytes_read: int
    seed: int
    totals: dict[str, Figure]  # COUNTED -> corpus total
    dedup: bool = True
    replicas: int = 1
    gpus_per_replica: float = 0.0
    gpu_hour_price: float | None = None
    calibration: Calibration | None = None
    throughput: Throughput | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def sampled(self) -> bool:
        return self.files_read < self.files_total

    @property
    def output_tokens_upper_bound(self) -> Figure:
        return self.totals["requests"].scaled(self.max_tokens)

    @property
    def output_tokens_expected(self) -> Figure | None:
        if self.calibration is None:
            return None
        return product(self.totals["requests"], self.calibration.output_tokens_per_request)

    @property
    def output_tokens(self) -> tuple[Figure, str]:
        """The output tokens the times are estimated for: the calibration's expectation, else the upper bound."""
        expected = self.output_tokens_expected
        return (expected, "expected") if expected is not None else (self.output_tokens_upper_bound, "upper bound")

    @property
    def costing(self) -> Costing | None:
        if self.throughput is None:
            return None
        return costing(self.output_tokens[0], self.throughput, self.replicas, self.gpus_per_replica,
                       self.gpu_hour_price)

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-serialisable data (``--json``, ``--format json``); an interval end that is not known
        is null."""
        tokens, basis = self.output_tokens
        costs = self.costing
        data = {
            "input": self.input, "model": self.model, "engine": self.engine, "generator": self.generator,
            "task_types": self.task_types, "n": self.n, "max_tokens": self.max_tokens, "dedup": self.dedup,
            "sample": {"files_read": self.files_read, "files_total": self.files_total, "bytes_read": self.bytes_read,
                       "bytes_total": self.bytes_total, "seed": self.seed, "exact": not self.sampled,
                       "interval": "95%, ratio to bytes, per-file variance" if self.sampled else None},
            **{name: _figure(self.totals[name]) for name in COUNTED},
            "output_tokens": {"upper_bound": _figure(self.output_tokens_upper_bound),
                              "expected": _figure(self.output_tokens_expected),
                              "per_request": _figure(self.calibration.output_tokens_per_request)
                              if self.calibration else None,
                              "basis": basis, "used": _figure(tokens)},
            "calibration": None if self.calibration is None else {
                **{name: asdict(run) if run else None for name, run in (
                    ("first", self.calibration.first), ("small", self.calibration.small),
                    ("large", self.calibration.large))},
                "ray_start_s": self.calibration.ray_start_s,
                "output_tokens_per_s": self.calibration.rate.output_tokens_per_s,
                "startup_s": self.calibration.first_startup_s,
                "startup_after_first_s": self.calibration.rate.startup_s, "how": self.calibration.rate.how},
            "throughput": None if self.throughput is None else asdict(self.throughput),
            "replicas": self.replicas, "gpus_per_replica": self.gpus_per_replica,
            "gpu_hour_price": self.gpu_hour_price,
            "wall_seconds": _figure(costs.wall_seconds) if costs else None,
            "device_hours": _figure(costs.device_hours) if costs else None,
            "device_hours_unit": costs.unit if costs else None,
            "cost": _figure(costs.cost) if costs and costs.cost else None,
            "notes": self.notes,
        }
        return data

    def format(self) -> str:
        """The plan as the console shows it."""
        where = (f"a sample of {self.files_read} of {self.files_total} files ({_bytes(self.bytes_read)} of "
                 f"{_bytes(self.bytes_total)}; seed {self.seed}); totals scaled by bytes, 95% intervals from the "
                 "per-file variance" if self.sampled
                 else f"all {self.files_total} file(s), {_bytes(self.bytes_total)}: counts are exact")
        t = self.totals
        lines = [f"bonito-ray plan: {self.input}: {where}",
                 f"  model: {self.model} (engine {self.engine}, generator {self.generator}); task types: "
                 f"{', '.join(self.task_types)}; n {self.n}",
                 f"  documents:     {_shown(t['documents'])}   (records rejected: {_shown(t['records_rejected'])})",
                 f"  passages:      {_shown(t['passages'])}   (cleaned and chunked; "
                 + (f"exact duplicates dropped: {_shown(t['duplicates'])})" if self.dedup
                    else "duplicates kept: --no-dedup)"),
                 f"  requests:      {_shown(t['requests'])}   (passages x {len(self.task_types)} task types x n "
                 f"{self.n})",
                 f"  input tokens:  {_shown(t['input_tokens'])}   (the prompts, in the model's tokenizer)",
                 f"  output tokens: {_shown(self.output_tokens_upper_bound)} at most (requests x --max-tokens "
                 f"{self.max_tokens})"]
        if self.calibration is not None:
            per = self.calibration.output_tokens_per_request
            calibration = self.calibration
            prompts = (calibration.large or calibration.first).prompts
            lines.append(f"                 {_shown(self.output_tokens_expected)} expected ({_shown(per, 1)} per "
                         f"request over {prompts} calibration prompts)")
            jobs = [("first", calibration.first), ("again", calibration.small), ("large", calibration.large)]
            lines.append("  calibration:   Ray start " + f"{calibration.ray_start_s:.1f} s; jobs: " + "; ".join(
                f"{name} {r.prompts} prompts, {r.output_tokens:,} output tokens, {r.seconds:.1f} s"
                for name, r in jobs if r is not None))
        costs = self.costing
        if self.throughput is None or costs is None:
            lines.append("  throughput:    unknown: no calibration (--calibrate N) and no published figure for this "
                         "model, engine and --accelerator-type; token counts only")
        else:
            tp = self.throughput
            label = "measured" if tp.source == "calibration" else "PUBLISHED, not measured"
            lines.append(f"  throughput:    {tp.output_tokens_per_s:,.1f} output tokens/s per replica ({label}: "
                         f"{tp.detail})")
            if tp.source == "calibration":
                lines.append(f"  start-up:      {tp.startup_s:.1f} s for a job that is the first in its process (a "
                             f"generate command), {tp.startup_after_first_s:.1f} s after one; Ray's start "
                             f"{tp.ray_start_s:.1f} s")
            basis = self.output_tokens[1]
            lines.append(f"  wall time:     {_duration(costs.wall_seconds)} on {self.replicas} replica(s) (for the "
                         f"{basis} output tokens; replicas scale ideally)")
            note = "" if costs.unit == "GPU-hours" else " (the replicas hold no GPU: replica-hours)"
            lines.append(f"  {costs.unit + ':':<14} {_shown(costs.device_hours, 2)}{note}")
            if costs.cost is not None:
                per = "GPU-hour" if costs.unit == "GPU-hours" else "replica-hour"
                lines.append(f"  cost:          {_shown(costs.cost, 2)} at {self.gpu_hour_price:g} per {per}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _figure(figure: Figure | None) -> dict[str, float | None] | None:
    if figure is None:
        return None
    return {k: (None if math.isinf(v) else v) for k, v in asdict(figure).items()}


def _shown(figure: Figure, decimals: int = 0) -> str:
    value = f"{figure.estimate:,.{decimals}f}"
    if figure.is_exact:
        return value
    high = "?" if math.isinf(figure.high) else f"{figure.high:,.{decimals}f}"
    return f"{value} (95%: {figure.low:,.{decimals}f} to {high})"


def _duration(figure: Figure) -> str:
    value = _seconds(figure.estimate)
    if figure.is_exact:
        return value
    return f"{value} (95%: {_seconds(figure.low)} to {'?' if math.isinf(figure.high) else _seconds(figure.high)})"


def _seconds(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _bytes(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    return f"{size} B"

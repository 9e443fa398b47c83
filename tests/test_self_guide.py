"""SELF-GUIDE: spec checks, each filter and the vote against hand-computed cases, a whole run on a scripted
model, a real run on the hf engine killed and resumed, export of the result, and fine-tuning on it then
SELF-GUIDE's evaluation (prompting vs fine-tuned)."""

import contextlib
import json
import logging
import re
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pds
import pytest
import torch
import yaml

from bonito_ray.adapt.batches import IGNORE_INDEX, collate, encode_examples, summed_token_loss
from bonito_ray.adapt.data import load_examples, self_guide_task
from bonito_ray.adapt.errors import DatasetError
from bonito_ray.adapt.export import export
from bonito_ray.adapt.metrics import label_scores, rouge_scores
from bonito_ray.adapt.prompts import encode_prompt, read_answer
from bonito_ray.adapt.scoring import greedy_generate
from bonito_ray.cli import main
from bonito_ray.budget import ErrorBudgetExceeded
from bonito_ray.commit import ResumeMismatchError
from bonito_ray.config import ConfigError
from bonito_ray.engines import STOP
from bonito_ray.engines.hf import SeededSampler
from bonito_ray.hf_models import padded_tokenizer
from bonito_ray.rejects import REASONS
from bonito_ray.schema import SELF_GUIDE_REJECTS_DIRS, SELF_GUIDE_STAGES, is_accepted_file, stable_id
from bonito_ray.self_guide import filters, vote
from bonito_ray.self_guide.config import SelfGuideConfig
from bonito_ray.self_guide.pipeline import self_guide
from bonito_ray.self_guide.prompts import annotation_prompt, input_prompt, read_slot, slot_answer
from bonito_ray.self_guide.spec import load_spec, parse_spec
from tests.adapt_fixtures import synthetic_examples, write_generated_dataset
from tests import tiny_models
from tests.faults import start_then_kill

ROOT = Path(__file__).resolve().parents[1]
DEMOS = [  # input lengths 56, 69, 52, 57 characters
    {"input": "The tenant pays the rent on the first day of each month.", "output": "tenant"},
    {"input": "The landlord repairs the heating within five working days of notice.", "output": "landlord"},
    {"input": "The tenant keeps the garden tidy and cuts the grass.", "output": "tenant"},
    {"input": "The landlord insures the building against fire and storm.", "output": "landlord"},
]
SPEC = {"name": "clause_party", "instruction": "Say which party the lease clause obliges.",
        "kind": "classification", "labels": ["tenant", "landlord"], "demonstrations": DEMOS}


def write_spec(path: Path, **changes) -> str:
    path.write_text(yaml.safe_dump({**SPEC, **changes}))
    return str(path)


# --- the spec -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    ({"demonstrations": DEMOS[:2]}, "needs at least 3 demonstrations, got 2"),
    ({"demonstrations": DEMOS[:2] + [{"input": "The tenant pays.", "output": "both"}]},
     "demonstration 3: output 'both' is not one of the labels"),
    ({"labels": ["tenant"]}, "needs labels: a list of two or more"),
    ({"kind": "regression"}, "kind must be one of classification, generation"),
    ({"kind": "generation"}, "labels are for classification tasks only"),
    ({"instruction": " "}, "instruction must be a non-empty string"),
    ({"examples": 0}, "examples must be a positive integer"),
    ({"demos": []}, "unknown key(s) demos"),
])
def test_a_bad_spec_fails_in_one_line_naming_the_problem(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        load_spec(write_spec(tmp_path / "spec.yaml", **changes))
    assert "\n" not in str(caught.value) and "spec.yaml" in str(caught.value)


def test_the_cli_reports_a_bad_spec_and_a_bad_setting_without_a_traceback(tmp_path, capsys):
    spec = write_spec(tmp_path / "spec.yaml", demonstrations=DEMOS[:1])
    assert main(["self-guide", "--spec", spec, "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().endswith("needs at least 3 demonstrations, got 1")
    assert main(["self-guide", "--spec", spec, "--output", str(tmp_path / "o"), "--samples", "0"]) == 2
    assert capsys.readouterr().err.strip() == "bonito-ray: error: samples must be >= 1"
    assert not (tmp_path / "out").exists() and not (tmp_path / "o").exists()


def test_defaults_are_the_papers():
    config = SelfGuideConfig(spec="s.yaml", output="o")
    spec = parse_spec(SPEC)
    assert config.rounds(spec) == 40 and config.inputs_per_round == 10
    assert config.engine_passes(spec) == 41  # each round, then annotation: 41 engine starts
    assert SelfGuideConfig(spec="s.yaml", output="o", rounds_per_pass=8).engine_passes(spec) == 6
    assert config.input_sampling(spec) == {"max_tokens": 256, "temperature": 0.7, "top_p": 1.0, "top_k": 40}
    assert config.input_sampling(parse_spec({**SPEC, "kind": "generation", "labels": []}))["temperature"] == 0.9
    assert config.output_sampling() == {"max_tokens": 128, "temperature": 0.2, "top_p": 1.0, "top_k": 10}
    assert (config.samples, config.consistency_threshold, config.length_std) == (10, 0.3, 2.0)
    assert config.filters_input_length(spec) and not config.filters_output_length(spec)


# --- prompts, filters and the vote ----------------------------------------------------------------------------

def test_prompts_end_in_an_open_slot_and_read_back():
    spec = parse_spec(SPEC)
    prompt = input_prompt(spec, ['A "quoted" clause.'], label="landlord")
    assert prompt.endswith('[input] = "') and "expected output for the new input is: landlord" in prompt
    assert r'[input] = "A \"quoted\" clause."' in prompt  # a quote inside an example does not close its slot
    assert annotation_prompt(spec, "X.").endswith('[input] = "X."\n[output] = "')
    assert read_slot('The tenant pays.", then more') == "The tenant pays."
    assert read_slot('He said \\"no\\" twice."\n[input] = "next') == 'He said "no" twice.'
    assert read_slot("unclosed\nline two\n[input] = \"x") == "unclosed\nline two"
    assert read_slot(None) == read_slot('"') == ""
    answer = slot_answer('He said "no".')
    assert answer == r'He said \"no\"."' and read_slot(answer) == 'He said "no".'  # a trained target reads back


def test_length_bounds_are_mean_plus_minus_k_population_std():
    bounds = filters.LengthBounds.around(["aa", "aaaa", "aaaaaa"], 2)  # mean 4, std sqrt(8/3) = 1.63299
    assert bounds.low == pytest.approx(0.73401, abs=1e-4) and bounds.high == pytest.approx(7.26599, abs=1e-4)
    narrow = filters.LengthBounds.around(["aa", "aaaa", "aaaaaa"], 1)  # 2.367 .. 5.633
    assert filters.length("aa", narrow) == filters.TOO_SHORT and filters.length("a" * 6, narrow) == filters.TOO_LONG
    assert filters.length("aaa", narrow) is None and filters.length("a" * 5, narrow) is None


@pytest.mark.parametrize("text, dropped", [
    ("Sure, I'd be happy to help! The tenant pays.", True), ("As an AI, I cannot say.", True),
    ("Input: the tenant pays.", True), ("The output of the boiler is checked.", True), ("[input]", True),
    ("The tenant inputs the meter readings.", False), ("Surely the landlord pays.", False),
])
def test_noise_drops_chat_phrases_and_template_words_only(text, dropped):
    assert (filters.noise(text) == filters.NOISE) is dropped


def test_filters_run_in_the_papers_order_and_say_why():
    bounds = filters.LengthBounds(5, 30)
    assert filters.first_drop("   ", bounds=bounds, use_noise=True)[0] == filters.EMPTY
    assert filters.first_drop("Sure!", bounds=bounds, use_noise=True)[0] == filters.NOISE  # 5 chars: in bounds
    assert filters.first_drop("Sure", bounds=bounds, use_noise=True) == (filters.TOO_SHORT,
                                                                        "4 characters; allowed 5..30")
    assert filters.first_drop("Sure, fine", bounds=None, use_noise=False, seen={"x"}) == (None, "")
    assert filters.first_drop("x" * 9, bounds=bounds, use_noise=True, seen={"x" * 9})[0] == filters.DUPLICATE


def test_majority_vote_threshold_and_ties():
    assert vote.majority(["a", "b", "a", "c"], 0.3) == vote.Vote("a", 2, 4)
    tie = vote.majority(["long answer", "short", "long answer", "short"], 0.3)
    assert tie.answer == "short" and tie.count == 2  # a tie goes to the shortest answer
    low = vote.majority(["a", "b", "c", "d"], 0.3)  # 1/4 = 0.25 < 0.3
    assert low.answer is None and low.reason == vote.NO_MAJORITY and "1 of 4" in low.detail
    assert vote.majority(["a", "b", "c"], 0.3).answer == "a"  # 1/3 >= 0.3; tie of equal lengths: first by name
    assert vote.majority([], 0.3).reason == vote.NO_VALID_OUTPUT


def test_label_mapping_takes_the_first_label_in_the_text():
    labels = ("tenant", "landlord", "land")
    assert vote.to_label("The Landlord, not the tenant.", labels) == "landlord"  # earliest, longer one at a tie
    assert vote.to_label("tenants and landlords", labels) is None  # whole words only
    assert vote.to_label("the land", labels) == "land"


def test_class_balance_cuts_every_label_to_the_smallest():
    rows = [{"id": f"t{i}", "label": "tenant"} for i in range(5)] + [{"id": f"l{i}", "label": "landlord"}
                                                                     for i in range(2)]
    kept, dropped = vote.balance(rows, "label", seed=1)
    assert sorted(r["label"] for r in kept) == ["landlord", "landlord", "tenant", "tenant"] and len(dropped) == 3
    again, _ = vote.balance(list(reversed(rows)), "label", seed=1)
    assert sorted(r["id"] for r in again) == sorted(r["id"] for r in kept)  # the order they come in does not matter


def test_hf_sampler_top_k_one_is_greedy():
    scores = torch.randn(3, 50)
    params = [{"temperature": 5.0, "top_p": 1.0, "top_k": 1, "seed": s} for s in range(3)]
    forced = SeededSampler(params, "cpu")(None, scores.clone())
    assert forced.argmax(-1).tolist() == scores.argmax(-1).tolist()
    free = SeededSampler([{**p, "top_k": None} for p in params], "cpu")(None, scores.clone())
    assert free.argmax(-1).tolist() != scores.argmax(-1).tolist()  # at temperature 5 it is not (seeds 0-2)


# --- live progress ---------------------------------------------------------------------------------------------

def test_progress_line_and_file_follow_the_steps(tmp_path, monkeypatch):
    """The figures each step tells, as the file and the terminal line show them (no Ray: counted on the driver)."""
    import io
    import time

    import pyarrow.fs as pafs

    from bonito_ray.progress import INTERVAL_ENV
    from bonito_ray.schema import PROGRESS_FILE, STAGING_DIR
    from bonito_ray.self_guide.progress import SelfGuideProgress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setenv(INTERVAL_ENV, "0.1")
    shown, path = Terminal(), tmp_path / STAGING_DIR / PROGRESS_FILE
    progress = SelfGuideProgress(pafs.LocalFileSystem(), str(tmp_path), "run-1", rounds=3, stream=shown).start()
    progress.round_done(2, ["duplicate"], skipped=True)  # staged by an earlier attempt
    progress.engine_pass(8)
    progress.returned(3)
    deadline, running = time.monotonic() + 10, {}
    while running.get("pass_requests_done") != 3 and time.monotonic() < deadline:
        time.sleep(0.05)
        running = json.loads(path.read_text()) if path.exists() else {}
    assert running["state"] == "running" and running["rounds_skipped"] == 1 and running["step"] == "inputs"
    assert progress.line(running).startswith("bonito-ray self-guide: rounds 1/3 (pass 3/8 requests)  inputs kept 2  "
                                             "annotation -  accepted 0  dropped 1 inputs, 0 samples, 0 by the vote  "
                                             "[")  # no word of the step: the line says it already
    progress.returned(5)
    progress.round_done(3, ["noise"])
    progress.round_done(1, ["empty", "noise", "noise"])
    progress.annotation_started(12)
    progress.returned(12)
    progress.annotated(4, ["not_a_label"] * 3, ["no_majority", "class_balance"])
    final = progress.stop("generated")
    assert json.loads(path.read_text()) == final and final["dropped"] == {
        "self_guide_input": {"duplicate": 1, "empty": 1, "noise": 3}, "self_guide_sample": {"not_a_label": 3},
        "self_guide_vote": {"class_balance": 1, "no_majority": 1}}
    assert (final["rounds_done"], final["inputs_kept"], final["samples_done"], final["accepted"]) == (3, 6, 12, 4)
    assert shown.getvalue().startswith("\r\x1b[K") and shown.getvalue().count("\n") == 1  # one line, redrawn
    assert shown.getvalue().rsplit("\r\x1b[K", 1)[1].startswith(
        "bonito-ray self-guide: rounds 3/3  inputs kept 6  annotation 12/12 samples  accepted 4  "
        "dropped 5 inputs, 3 samples, 2 by the vote  done  [")


# --- a whole run on a scripted model ---------------------------------------------------------------------------

# The scripted model's inputs that are kept, by round: each a new clause, none a near copy of another.
KEYS = ("The tenant returns all keys to the agent on the last day.",
        "Spare keys made during the lease go back when the tenant leaves.",
        "Lost keys are replaced at the cost of the tenant within a week.")
PAINTS = ("The landlord paints the hall and the stairs every five years.",
          "The landlord paints the outside walls before anyone moves in.",
          "The tenant paints the bedroom walls white before moving out.")
FIXED = "A fixed clause that the tenant signs every single year."


def scripted_text(row: dict) -> str:
    """What the scripted model writes: an input by its index in the round, or an answer by the input's words."""
    prompt = row["prompt"]
    if prompt.endswith('[input] = "'):
        round_, k = row["position"], row["sample_index"]
        return {0: KEYS[round_],  # kept
                1: "",  # empty
                2: "Sure, I'd be happy to help! The tenant pays for water.",  # noise, length in bounds
                # too short; in round 2 a near copy of demonstration 1 (9 of its 11 words), length in bounds
                3: "The tenant pays the rent on the first day of every month." if round_ == 2 else "Rent.",
                # kept in round 0; then a duplicate; then a near copy of it (8 of 11 words)
                4: "A fixed clause which the tenant signs every year." if round_ == 2 else FIXED,
                5: PAINTS[round_]}[k] + '"\n'
    text = json.loads(prompt.rsplit("[input] = ", 1)[1].split("\n")[0])
    j = row["sample_index"]
    if "keys" in text:  # 3 tenant, 1 landlord, 1 not a label: tenant wins 3 of 4
        answer = ["tenant", "tenant", "tenant", "The landlord.", "maybe"][j]
    elif "paints" in text:  # landlord, one noisy sample; round 2 says tenant
        answer = "tenant" if text == PAINTS[2] else ("Sure, happy to help" if j == 1 else "landlord")
    else:  # the fixed clause: never a label
        answer = "unsure"
    return answer + '"\n'


def scripted_stage(requests):
    def generate(batch: pa.Table) -> pa.Table:
        texts = [scripted_text(row) for row in batch.to_pylist()]
        n = batch.num_rows
        return (batch.append_column("generated_text", pa.array(texts, pa.string()))
                .append_column("num_input_tokens", pa.array([len(p) for p in batch["prompt"].to_pylist()], pa.int64()))
                .append_column("num_generated_tokens", pa.array([len(t) for t in texts], pa.int64()))
                .append_column("finish_reason", pa.array([STOP] * n, pa.string()))
                .append_column("engine_error", pa.nulls(n, pa.string())))

    return requests.map_batches(generate, batch_format="pyarrow", batch_size=64)


def rows(path: Path) -> list[dict]:
    files = [str(p) for p in sorted(path.rglob("*.p*q*")) if not p.name.startswith(".")]
    return pds.dataset(files, format="parquet").to_table().to_pylist() if files else []


def reasons(path: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows(path):
        counts[row["reason"]] = counts.get(row["reason"], 0) + 1
    return counts


def assert_accounted_for(out: Path, spec: str, summary, rounds: int, per_round: int, samples: int) -> dict:
    """A committed SELF-GUIDE dataset accounts for everything: each generated input kept or dropped, once; each
    kept input accepted or voted out, once; at most ``samples`` dropped samples per kept input, each once; every
    reject's reason registered for its stage (``bonito_ray.rejects.REASONS``) with its raw text; the summary's and
    the manifest's counts are the files'. Returns the rows read, by folder, for a test's own checks."""
    found = {folder: rows(out / folder) for folder in ("self_guide", "_self_guide", *SELF_GUIDE_REJECTS_DIRS)}
    dropped, sampled_out, voted_out = (found[d] for d in SELF_GUIDE_REJECTS_DIRS)
    kept = [r["id"] for r in found["_self_guide"]]
    fingerprint = load_spec(spec).fingerprint()
    input_ids = {stable_id(fingerprint, "input", r, k) for r in range(rounds) for k in range(per_round)}
    assert sorted(kept + [r["id"] for r in dropped]) == sorted(input_ids)
    assert sorted([r["id"] for r in found["self_guide"]] + [r["id"] for r in voted_out]) == sorted(kept)
    assert len({r["id"] for r in sampled_out}) == len(sampled_out) <= samples * len(kept)
    for stage, rejects in zip(SELF_GUIDE_STAGES, (dropped, sampled_out, voted_out)):
        unregistered = [r["reason"] for r in rejects if (stage, r["reason"]) not in REASONS]
        assert not unregistered and all(r["raw"] is not None for r in rejects), (stage, unregistered)
    assert summary.inputs_kept == len(kept) and summary.accepted == len(found["self_guide"])
    assert list(summary.dropped.values()) == [dict(sorted(Counter(r["reason"] for r in rejects).items()))
                                              for rejects in (dropped, sampled_out, voted_out)]
    manifest = json.loads((out / "_manifest.json").read_text())
    assert (out / "_SUCCESS").exists() and manifest["summary"]["accepted"].get("self_guide", 0) == summary.accepted
    return found



@pytest.mark.parametrize("kept", [True, False])
def test_a_pass_waits_for_the_engine_only_where_its_replicas_are_not_kept(ray_cluster, tmp_path, kept):
    """With the engine kept for the job (vllm), the replica started for the first pass serves the next ones: no later
    pass is shown waiting for the engine; else each pass starts the engine again and waits for it."""
    import pyarrow.fs as pafs
    import ray

    from bonito_ray.progress import ProgressCounter
    from bonito_ray.self_guide.progress import SelfGuideProgress

    engine = ProgressCounter.remote()
    shown = SelfGuideProgress(pafs.LocalFileSystem(), str(tmp_path), "run-1", rounds=2, engine=engine,
                              engine_kept=kept)
    shown.engine_pass(4)
    assert shown.report()["engine_starting"]
    ray.get(engine.engine_started.remote())
    assert not shown.report()["engine_starting"]
    shown.returned(4)
    shown.round_done(4, [])
    shown.engine_pass(4)
    assert shown.report()["engine_starting"] is not kept
    shown.returned(4)
    shown.round_done(4, [])
    shown.annotation_started(16)
    assert shown.report()["engine_starting"] is not kept

@contextlib.contextmanager
def progress_lines():
    """The progress lines a run logs (not on a terminal: the last one when it ends), collected."""
    lines: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: lines.append(record.getMessage())
    shown = logging.getLogger("bonito_ray.progress")
    level = shown.level
    shown.addHandler(handler)
    shown.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        shown.removeHandler(handler)
        shown.setLevel(level)


@pytest.fixture(scope="module")
def scripted_run(ray_cluster, tmp_path_factory):
    """An uninterrupted run on the scripted model: 3 rounds of 6 inputs in two engine passes, 5 samples each;
    (config, summary, the progress lines it logged)."""
    folder = tmp_path_factory.mktemp("scripted")
    spec = write_spec(folder / "spec.yaml", examples=18)
    config = SelfGuideConfig(spec=spec, output=str(folder / "out"), engine="echo", inputs_per_round=6,
                             rounds_per_pass=2, samples=5, seed=7)
    with progress_lines() as lines:
        summary = self_guide(config, engine_stage=scripted_stage)
    return config, summary, lines


# What the scripted run's last progress line says: every count as the summary has it (below).
SCRIPTED_FINAL_PROGRESS = ("bonito-ray self-guide: rounds 3/3  inputs kept 7  annotation 35/35 samples  accepted 4  "
                           "dropped 11 inputs, 10 samples, 3 by the vote  done")


def test_a_scripted_run_filters_votes_balances_and_exports(scripted_run, tmp_path):
    config, summary, progress = scripted_run
    spec, out = config.spec, Path(config.output)

    # Inputs: rounds keep k0 and k5 (and k4 in round 0 only); drop empty and noise each round, too_short in rounds
    # 0 and 1, k4's duplicate in round 1; in round 2 a near copy of a demonstration and one of round 0's k4.
    assert summary.inputs_kept == 7
    assert reasons(out / "_rejects" / "stage=self_guide_input") == {
        "empty": 3, "noise": 3, "too_short": 2, "duplicate": 1, "near_demonstration": 1, "near_duplicate_input": 1}
    near = {r["reason"]: r["detail"] for r in rows(out / "_rejects" / "stage=self_guide_input")
            if r["reason"].startswith("near_")}
    assert near["near_demonstration"].startswith("word similarity 0.82 to demonstration 1 ")
    assert near["near_duplicate_input"].startswith(f"word similarity 0.73 to an input kept before it, {FIXED!r} ")
    # Samples: each 'keys' input has one non-label; round 0 and 1 'paints' one noisy; the fixed clause 5 non-labels.
    assert reasons(out / "_rejects" / "stage=self_guide_sample") == {"not_a_label": 8, "noise": 2}
    # Votes: tenant 4 (3 'keys' + round 2 'paints'), landlord 2: balanced to 2 + 2; the fixed clause has no answer.
    assert reasons(out / "_rejects" / "stage=self_guide_vote") == {"no_valid_output": 1, "class_balance": 2}
    accepted = rows(out / "self_guide")
    assert sorted(r["output"] for r in accepted) == ["landlord", "landlord", "tenant", "tenant"]
    assert summary.accepted == 4 and summary.labels == {"landlord": 2, "tenant": 2}
    assert progress[-1].startswith(SCRIPTED_FINAL_PROGRESS)  # the live line ends on the summary's counts
    by_input = {r["input"]: r["output"] for r in accepted}
    assert by_input.get(PAINTS[0]) == "landlord"
    assert all(r["task_type"] == "self_guide" and r["model"] == config.model for r in accepted)
    # Every generated input is accounted for exactly once: kept (then accepted or a vote reject) or dropped.
    input_ids = {stable_id(load_spec(spec).fingerprint(), "input", r, k) for r in range(3) for k in range(6)}
    kept = {r["id"] for r in rows(out / "_self_guide")}
    dropped = [r["id"] for r in rows(out / "_rejects" / "stage=self_guide_input")]
    assert kept | set(dropped) == input_ids and not kept & set(dropped) and len(dropped) == 11
    assert {r["id"] for r in accepted} | {r["id"] for r in rows(out / "_rejects" / "stage=self_guide_vote")} == kept

    # The same layout and protocol as `generate`: committed, manifest, card; export reads it unchanged.
    assert (out / "_SUCCESS").exists() and not (out / ".staging").exists()
    assert all(is_accepted_file(str(p.relative_to(out))) for p in (out / "self_guide").iterdir())
    manifest = json.loads((out / "_manifest.json").read_text())
    assert manifest["summary"]["accepted"] == {"self_guide": 4}
    assert manifest["summary"]["filtered"]["class_balance"] == 2
    assert manifest["summary"]["filtered"]["near_demonstration"] == manifest["summary"]["filtered"][
        "near_duplicate_input"] == 1  # counted as every other filter's drops: in the summary and the card
    assert ("inputs dropped: 11 (duplicate: 1, empty: 3, near_demonstration: 1, near_duplicate_input: 1, noise: 3, "
            "too_short: 2)") in summary.format()
    card = (out / "_card" / "README.md").read_text()
    assert "SELF-GUIDE" in card and "near_demonstration: 1" in card and "near_duplicate_input: 1" in card
    # Exported as finetune trains on it: the task's few-shot prompt around each input, the slot's answer.
    exported = export(str(out), str(tmp_path / "export"), "alpaca-jsonl,prompt-completion")
    lines = [json.loads(x) for x in (tmp_path / "export" / "alpaca.jsonl").read_text().splitlines()]
    pairs = [json.loads(x) for x in (tmp_path / "export" / "prompt_completion.jsonl").read_text().splitlines()]
    task = load_spec(spec)
    want = sorted((annotation_prompt(task, r["input"]), slot_answer(r["output"])) for r in accepted)
    assert exported.rows == 4 and sorted((x["instruction"], x["output"]) for x in lines) == want
    assert sorted((x["prompt"], x["completion"]) for x in pairs) == want
    assert all(x["prompt"].startswith(task.instruction) for x in pairs)
    assert main(["export", "--input", str(out), "--output", str(tmp_path / "cli"), "--formats", "messages",
                 "--task-types", "self_guide"]) == 0
    assert len((tmp_path / "cli" / "messages.jsonl").read_text().splitlines()) == 4
    assert main(["export", "--input", str(out), "--output", str(tmp_path / "none"), "--task-types", "ynqa"]) == 2

    # A rerun of the finished job does nothing; another setting on top of it is refused.
    again = self_guide(config, engine_stage=scripted_stage)
    assert again.nothing_done and again.accepted == 4
    with pytest.raises(Exception, match="different job"):
        self_guide(SelfGuideConfig(**{**config.to_dict(), "samples": 3}), engine_stage=scripted_stage)


def failing_at_pass(number: int):
    """The scripted engine, except that its ``number``-th engine pass (0-based) fails the run."""
    calls = []

    def stage(requests):
        calls.append(1)
        if len(calls) == number + 1:
            raise RuntimeError(f"injected failure in engine pass {number}")
        return scripted_stage(requests)
    return stage


def test_a_run_failing_mid_way_resumes_at_its_first_unstaged_round(scripted_run, tmp_path):
    reference, _, _ = scripted_run
    config = SelfGuideConfig(**{**reference.to_dict(), "output": str(tmp_path / "out")})  # passes: rounds 0-1, 2
    with progress_lines() as failed, pytest.raises(RuntimeError, match="injected failure in engine pass 1"):
        self_guide(config, engine_stage=failing_at_pass(1))  # the pass of round 2
    assert "rounds 2/3" in failed[-1] and "  failed  [" in failed[-1]
    staged = tmp_path / "out" / ".staging" / "_self_guide"
    assert sorted(p.name for p in staged.iterdir()) == ["inputs-round-0000.pq", "inputs-round-0001.pq"]
    with progress_lines() as resumed:
        summary = self_guide(config, engine_stage=scripted_stage)
    assert summary.rounds_skipped == 2
    assert resumed[-1].startswith(SCRIPTED_FINAL_PROGRESS)  # the skipped rounds' inputs and drops counted too
    for folder in ("self_guide", "_self_guide", *SELF_GUIDE_REJECTS_DIRS):  # as if never interrupted
        key = lambda r: r["id"]  # noqa: E731
        assert sorted(rows(tmp_path / "out" / folder), key=key) == sorted(rows(Path(reference.output) / folder),
                                                                          key=key), folder


def erroring_at_pass(number: int):
    """The scripted engine, except that every request of its ``number``-th engine pass (0-based) is an engine
    error, as when a server is down for that pass."""
    calls = []

    def stage(requests):
        calls.append(1)
        if len(calls) != number + 1:
            return scripted_stage(requests)

        def fail(batch: pa.Table) -> pa.Table:
            n = batch.num_rows
            return (batch.append_column("generated_text", pa.nulls(n, pa.string()))
                    .append_column("num_input_tokens", pa.nulls(n, pa.int64()))
                    .append_column("num_generated_tokens", pa.nulls(n, pa.int64()))
                    .append_column("finish_reason", pa.nulls(n, pa.string()))
                    .append_column("engine_error", pa.array(["HTTP 503: the server is down"] * n, pa.string())))
        return requests.map_batches(fail, batch_format="pyarrow", batch_size=64)
    return stage


def test_an_engine_pass_over_the_error_budget_is_not_staged_and_a_rerun_does_it_again(scripted_run, tmp_path):
    reference, _, _ = scripted_run
    config = SelfGuideConfig(**{**reference.to_dict(), "output": str(tmp_path / "out")})  # passes: rounds 0-1, 2
    # Round 2's 6 requests all fail: 6 of the run's 18 so far, over the default budget of 5%.
    with pytest.raises(ErrorBudgetExceeded, match=r"6 of 18 requests \(33.3%\) failed in the engine.*a rerun keeps"):
        self_guide(config, engine_stage=erroring_at_pass(1))
    staged = tmp_path / "out" / ".staging" / "_self_guide"
    assert sorted(p.name for p in staged.iterdir()) == ["inputs-round-0000.pq", "inputs-round-0001.pq"]
    assert not (tmp_path / "out" / "_SUCCESS").exists()
    summary = self_guide(config, engine_stage=scripted_stage)
    assert summary.rounds_skipped == 2
    for folder in ("self_guide", "_self_guide", *SELF_GUIDE_REJECTS_DIRS):  # as if the server had never failed
        assert sorted(rows(tmp_path / "out" / folder), key=lambda r: r["id"]) == sorted(
            rows(Path(reference.output) / folder), key=lambda r: r["id"]), folder

    # A budget that allows them keeps the failed requests, each an engine_error reject of its stage.
    tolerant = SelfGuideConfig(**{**reference.to_dict(), "output": str(tmp_path / "tolerant"), "max_error_rate": 1.0})
    self_guide(tolerant, engine_stage=erroring_at_pass(1))
    dropped = rows(tmp_path / "tolerant" / SELF_GUIDE_REJECTS_DIRS[0])
    failed = [r["detail"] for r in dropped if r["reason"] == "engine_error"]
    assert len(failed) == 6 and all(d.startswith("HTTP 503: the server is down") for d in failed)


# --- fine-tuning on the dataset, and SELF-GUIDE's evaluation: prompting vs fine-tuned ----------------------------

@pytest.fixture(scope="module")
def task_model(tmp_path_factory) -> str:
    """A tiny random model whose tokenizer knows the task's prompts (short prompts, a label in one token)."""
    spec = parse_spec(SPEC)
    tokenizer = tiny_models.build_tokenizer([annotation_prompt(spec, d.input) + slot_answer(d.output)
                                             for d in spec.demonstrations])
    return tiny_models.save(tiny_models.build_model(tokenizer), tokenizer, tmp_path_factory.mktemp("task-model"))


def test_examples_are_prompted_with_their_task_and_the_loss_is_on_the_answer_only(task_model):
    spec, tokenizer = parse_spec(SPEC), padded_tokenizer(task_model)
    table = pa.Table.from_pylist([{"input": 'The tenant "always" pays.', "output": "tenant"},
                                  {"input": "The landlord repairs the roof.", "output": "landlord"}])
    encoded, dropped = encode_examples(tokenizer, table, "plain", 512, task=spec)
    labels = collate(encoded, [0, 1], tokenizer.pad_token_id)["labels"]
    assert dropped == 0
    for i, row in enumerate(table.to_pylist()):
        ids, start = encoded.ids[i].tolist(), encoded.prompt_lengths[i]
        # The prompt is the one the student answered when annotating (BOS, no Bonito markers); the target
        # completes its open slot, closing quote and EOS.
        assert tokenizer.decode(ids[:start]) == "<s>" + annotation_prompt(spec, row["input"])
        assert tokenizer.decode(ids[start:]) == row["output"] + '"</s>'
        assert labels[i, :start].eq(IGNORE_INDEX).all() and labels[i, len(ids):].eq(IGNORE_INDEX).all()
        assert labels[i, start:len(ids)].tolist() == ids[start:]


def test_a_self_guide_dataset_needs_its_spec_and_no_bonito_rows_beside_it(tmp_path):
    own = [{**r, "id": f"sg-{r['id']}", "task_type": "self_guide"} for r in synthetic_examples(2)]
    root = str(write_generated_dataset(tmp_path / "mixed", own + synthetic_examples(2)))  # a manifest without spec
    with pytest.raises(DatasetError, match="both SELF-GUIDE \\(self_guide\\) and Bonito examples"):
        self_guide_task(root, load_examples(root))
    with pytest.raises(DatasetError, match="holds no task spec \\(config.spec_contents"):
        self_guide_task(root, load_examples(root, ["self_guide"]))
    assert self_guide_task(root, load_examples(root, ["ynqa", "exqa"])) is None


def answer_loss(model, encoded, pad_id) -> float:
    """Mean loss over the answer tokens of ``encoded``, as the trainer defines it."""
    with torch.no_grad():
        summed = summed_token_loss(model, collate(encoded, range(len(encoded)), pad_id))
    return float(summed) / encoded.target_tokens(range(len(encoded)))


def greedy_answers(model, tokenizer, spec, texts) -> list[str]:
    """What evaluate reads from each greedy continuation (8 tokens), computed here one input at a time."""
    return [read_answer(tokenizer.decode(greedy_generate(model, [encode_prompt(tokenizer, text, "plain", spec)], 8,
                                                         tokenizer.pad_token_id, tokenizer.eos_token_id, "cpu")[0],
                                         skip_special_tokens=True), spec) for text in texts]


def test_finetune_on_a_self_guide_dataset_then_prompting_vs_fine_tuned(scripted_run, task_model, tmp_path,
                                                                     monkeypatch, capsys):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")  # Ray Train's reports collected fast
    config, made, _ = scripted_run
    spec, out, ft = load_spec(config.spec), config.output, tmp_path / "ft"
    assert main(["finetune", "--model", task_model, "--dataset", out, "--output", str(ft), "--task-types",
                 "self_guide", "--lora-rank", "8", "--learning-rate", "1e-2", "--batch-size", "2",
                 "--per-device-batch-size", "2", "--epochs", "20", "--validation-fraction", "0"]) == 0
    summary = json.loads((ft / "finetune_summary.json").read_text())
    assert summary["train_examples"] == made.accepted == 4 and summary["steps"] == 40
    assert summary["task"] == spec.name
    assert json.loads((ft / "adapter" / "bonito_ray_adapter.json").read_text())["task_spec"] == spec.to_dict()

    # It trained on those rows in their task prompts: their answers' loss went down.
    table = load_examples(out)
    examples, tokenizer = table.to_pylist(), padded_tokenizer(task_model)
    inputs, golds = [r["input"] for r in examples], [r["output"] for r in examples]
    encoded, _ = encode_examples(tokenizer, table, "plain", 512, task=spec)
    base = AutoModelForCausalLM.from_pretrained(task_model).eval()
    before = answer_loss(base, encoded, tokenizer.pad_token_id)
    expected = {"zero_shot": greedy_answers(base, tokenizer, spec, inputs)}
    adapted = PeftModel.from_pretrained(base, str(ft / "adapter")).eval()  # wraps base: zero-shot done first
    assert answer_loss(adapted, encoded, tokenizer.pad_token_id) < before - 1
    expected["adapted"] = greedy_answers(adapted, tokenizer, spec, inputs)

    # Evaluate the adapter on its training inputs, as a classification set and as a generation set: it takes
    # the spec, and so SELF-GUIDE's protocol, from the adapter; both variants see the task prompt, as training did.
    labels, answers = tmp_path / "labels.jsonl", tmp_path / "answers.jsonl"
    labels.write_text("".join(json.dumps({"input": x, "choices": list(spec.labels), "answer": y}) + "\n"
                              for x, y in zip(inputs, golds)))
    answers.write_text("".join(json.dumps({"input": x, "answer": y}) + "\n" for x, y in zip(inputs, golds)))
    capsys.readouterr()
    assert main(["evaluate", "--adapter", str(ft / "adapter"), "--eval-set", str(labels), "--eval-set",
                 str(answers), "--max-new-tokens", "8", "--output", str(tmp_path / "report.json")]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["protocol"], report["task"]) == ("self-guide", spec.name)
    assert report["variants"] == {"zero_shot": "prompting", "adapted": "fine-tuned"}
    by_name = {s["name"]: s for s in report["sets"]}
    assert (by_name["labels"]["metric"], by_name["answers"]["metric"]) == ("exact_match", "rouge_l")
    percent = lambda scores: {k: round(100 * v, 2) for k, v in scores.items()}  # noqa: E731
    for variant, predicted in expected.items():
        assert by_name["labels"][variant] == percent(label_scores(predicted, golds, [spec.labels] * len(golds)))
        assert by_name["answers"][variant] == percent(rouge_scores(predicted, [[g] for g in golds]))
    # The random base model writes no label; fine-tuned, it answers each input with a label.
    assert by_name["labels"]["zero_shot"]["no_label"] == 100 and by_name["labels"]["adapted"]["no_label"] == 0
    table = [line for line in capsys.readouterr().out.splitlines() if "(raylet)" not in line]
    assert table[0].split()[-3:] == ["prompting", "fine-tuned", "gain"] and "exact match" in table[1]


# --- for real: the hf engine on a tiny model, killed and resumed -------------------------------------------------

def test_hf_run_killed_after_its_rounds_resumes_without_losing_or_repeating_rows(ray_cluster, random_model, tmp_path):
    import ray

    spec = write_spec(tmp_path / "spec.yaml", kind="generation", labels=[], examples=6,
                      demonstrations=[{"input": d["input"], "output": d["input"].split()[1]} for d in DEMOS])
    out = tmp_path / "out"
    settings = {"spec": spec, "output": str(out), "model": random_model, "inputs_per_round": 3, "rounds_per_pass": 2,
                "samples": 2, "input_max_tokens": 12, "output_max_tokens": 6, "max_weak_examples": 2, "seed": 1,
                "batch_size": 8}
    command = [sys.executable, str(ROOT / "jobs" / "self_guide.py"), "--ray-address",
               ray.get_runtime_context().gcs_address]  # the test's own cluster, already up
    for key, value in settings.items():
        command += ["--" + key.replace("_", "-"), str(value)]
    both_rounds = out / ".staging" / "_self_guide" / "inputs-round-0001.pq"
    start_then_kill(command, both_rounds.exists, 180, "staged round", ROOT)
    assert not (out / "_SUCCESS").exists()
    staged = sorted(p.name for p in (out / ".staging" / "_self_guide").iterdir() if not p.name.startswith("."))
    assert staged[:2] == ["inputs-round-0000.pq", "inputs-round-0001.pq"]
    before = {p.name: p.read_bytes() for p in (out / ".staging" / "_self_guide").glob("inputs-round-*.pq")}

    with pytest.raises(ResumeMismatchError, match="different samples"):  # other settings never mix in
        self_guide(SelfGuideConfig(**{**settings, "samples": 3}))
    summary = self_guide(SelfGuideConfig(**settings))  # the killed job's settings: resumed here

    assert summary.rounds_skipped == len(before) == 2
    for name, data in before.items():  # the rounds staged before the kill were kept, not redone
        assert (out / "_self_guide" / name).read_bytes() == data
    # Every one of the 6 inputs exactly once: kept, or dropped with its reason; kept ones accepted or voted out.
    # A random model writes junk: whatever was dropped is counted by reason, in the summary too.
    found = assert_accounted_for(out, spec, summary, rounds=2, per_round=3, samples=2)
    assert found["_self_guide"], "no input was kept: annotation did not run on the hf engine"  # seeded: every run
    assert set(SELF_GUIDE_REJECTS_DIRS) <= {str(p.relative_to(out)) for p in (out / "_rejects").iterdir()}


def test_the_shipped_example_loads_and_the_docs_name_every_setting():
    from bonito_ray.config import field_names
    from bonito_ray.self_guide.config import SelfGuideConfig, load_config

    config = load_config(str(ROOT / "jobs" / "examples" / "self_guide.yaml"), {})
    spec = load_spec(str(ROOT / config.spec))
    assert spec.is_classification and config.rounds(spec) == 40 and len(spec.demonstrations) >= 3
    docs = (ROOT / "docs" / "self_guide.md").read_text()
    assert [name for name in field_names(SelfGuideConfig) if f"`{name}`" not in docs] == []
    # The docs time the shipped config as it is, run by the command they show (issue 26, item 5): no flag to add.
    assert "\nbonito-ray self-guide --config jobs/examples/self_guide.yaml\n" in docs
    input_passes = config.engine_passes(spec) - 1  # the last pass is annotation's
    assert (f"`rounds_per_pass: {config.rounds_per_pass}`: the {config.rounds(spec)} rounds in {input_passes} engine "
            "passes") in " ".join(docs.split())


def test_every_setting_has_a_flag_and_the_recorded_command_gives_back_the_same_config():
    import dataclasses
    import shlex

    from bonito_ray.cli import build_parser
    from bonito_ray.config import cli_flag
    from bonito_ray.self_guide.config import load_config

    parser = build_parser()
    flags = {a for action in parser._subparsers._group_actions[0].choices["self-guide"]._actions
             for a in action.option_strings}
    assert [f.name for f in dataclasses.fields(SelfGuideConfig) if cli_flag(f) not in flags] == []
    for config in (SelfGuideConfig(spec="my spec.yaml", output="o", seed=3, input_length_filter=False,
                                   noise_filter=False, output_temperature=0.5, engine_kwargs={"max_model_len": 256},
                                   rounds_per_pass=4),
                   SelfGuideConfig(spec="s.yaml", output="o", engine="openai", endpoint="http://10.0.0.5:8000/v1",
                                   served_model_name="student", api_key_env="MY_KEY", requests_per_second=5,
                                   max_retries=2, allow_external_endpoint=True)):
        args = parser.parse_args(shlex.split(config.command())[1:])
        not_config = ("command", "func", "config", "overwrite", "log_level")
        overrides = {k: v for k, v in vars(args).items() if k not in not_config}
        assert load_config(None, overrides).to_dict() == config.to_dict()


def test_openai_takes_generates_settings_and_checks(tmp_path):
    """The openai settings are generate's (``OpenAISettings``), checked by the same code, with the same words."""
    from bonito_ray.config import GenerateConfig, OpenAISettings

    spec, out = str(ROOT / "jobs" / "examples" / "tasks" / "clause_party.yaml"), str(tmp_path / "out")
    for values, message in (({"engine": "openai"}, "--engine openai needs --endpoint"),
                            ({"endpoint": "http://10.0.0.5/v1"}, "endpoint is for --engine openai"),
                            ({"engine": "openai", "endpoint": "http://8.8.8.8/v1"}, "--allow-external-endpoint"),
                            ({"engine": "openai", "endpoint": "http://10.0.0.5/v1", "max_retries": -1},
                             "max_retries must be >= 0")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            GenerateConfig(input=spec, output=out, **values)
        with pytest.raises(ConfigError, match=re.escape(message)):
            SelfGuideConfig(spec=spec, output=out, **values)
    config = SelfGuideConfig(spec=spec, output=out, engine="openai", endpoint="http://10.0.0.5:8000/v1",
                             served_model_name="student", request_timeout_s=30)
    assert config.engine_config().openai_settings() == config.openai_settings()
    assert issubclass(SelfGuideConfig, OpenAISettings) and issubclass(GenerateConfig, OpenAISettings)
    # What decides the run: the model name asked for; not where requests go or how they are paced.
    identity = config.identity(load_spec(spec))
    assert identity["served_model_name"] == "student" and "endpoint" not in identity
    assert "request_timeout_s" not in identity
    assert "served_model_name" not in SelfGuideConfig(spec=spec, output=out).identity(load_spec(spec))

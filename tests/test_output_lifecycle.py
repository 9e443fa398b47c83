"""The output's lifecycle (bonito_ray.output): states, overwrite, overlap, one writer, crash-safe commit.

Real components throughout: real files, a real local Ray cluster, real CLI processes killed at
each step of the commit protocol (those that end before cluster work forked from one interpreter that has
the CLI imported: tests/cli_forks.py), and the moto S3 server for the lease's conditional writes.
"""

import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as pds
import pytest
from pyarrow.fs import LocalFileSystem

from bonito_ray import lease as lease_module
from bonito_ray.cluster import FORBID_ENV
from bonito_ray.commit import CRASH_ENV, CRASH_EXIT_CODE, example_files
from bonito_ray.config import GenerateConfig
from bonito_ray.lease import Lease, LeaseHeldError
from bonito_ray.output import OutputError, OutputExistsError, State, check_no_overlap, inspect, open_output
from bonito_ray.pipeline import generate, plan_job
from bonito_ray.schema import LEASE_FILE, stable_id
from bonito_ray.storage import resolve_filesystem
from tests import cli_forks
from tests.corpus_files import write_jsonl
from tests.tiny_models import sample_passages

ROOT = Path(__file__).resolve().parents[1]
# The environment of a CLI run that must end before any cluster work: one that connects fails at once.
NO_CLUSTER = {FORBID_ENV: "1"}
# A deadline for a stuck run only: a job of these tests took over 300 s on a loaded machine (load 90 on 2 cores).
# A run that must end before any cluster work never waits for it: it fails at once (NO_CLUSTER).
CLI_TIMEOUT_SECONDS = 900


def cli(*args: str, env: dict | None = None, timeout: int = CLI_TIMEOUT_SECONDS) -> subprocess.CompletedProcess:
    """``bonito-ray generate ARGS`` in a process of its own. A run that must end before any cluster work
    (``NO_CLUSTER``) is forked from an interpreter that has the CLI imported already (tests/cli_forks.py):
    these tests make many such runs, and a fresh interpreter's imports would be most of their time."""
    env = {**os.environ, **(env or {})}
    if env.get(FORBID_ENV) == "1":
        return cli_forks.run(["generate", *args], env, timeout)
    return subprocess.run([sys.executable, "-m", "bonito_ray.cli", "generate", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)


@pytest.fixture
def joined_cluster(ray_cluster) -> list[str]:
    """The CLI arguments that make a run's driver join the session's cluster: every run of these tests that
    does cluster work joins it (a Ray start per CLI process would be most of its time)."""
    import ray

    return ["--ray-address", ray.get_runtime_context().gcs_address]


def job_args(corpus: Path, out: Path, model: str, *extra: str) -> list[str]:
    """CLI arguments of a small echo job; ``extra`` says where it runs (``joined_cluster``), unless it is to
    end before any cluster work (run with ``NO_CLUSTER``)."""
    return ["--input", str(corpus), "--output", str(out), "--engine", "echo", "--model", model,
            "--task-types", "ynqa", "--passage-tokens", "64", "--rows-per-file", "3", *extra]


def echo_job(corpus: Path, out: Path, model: str, **extra) -> GenerateConfig:
    """The job of ``job_args``, for a run in this process."""
    return GenerateConfig(input=str(corpus), output=str(out), engine="echo", model=model, task_types=["ynqa"],
                          passage_tokens=64, rows_per_file=3, **extra)


def ids_and_sources(out: Path) -> list[tuple[str, str]]:
    """(id, source) of every example row in the dataset at ``out``, staged or committed, sorted."""
    files = example_files(LocalFileSystem(), str(out))
    table = pds.dataset(files, format="parquet").to_table(columns=["id", "source"]) if files else None
    return sorted(zip(table["id"].to_pylist(), table["source"].to_pylist())) if table is not None else []


def expected(files: dict[Path, int]) -> list[tuple[str, str]]:
    """(id, source) of an uninterrupted run: one ynqa example per line of each file."""
    return sorted((stable_id(stable_id(str(f), line, 0), "ynqa", 0), str(f))
                  for f, count in files.items() for line in range(1, count + 1))


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("bonito-ray: error:")]
    assert len(errors) == 1, done.stderr[-3000:]
    return errors[0]


# ---- states ---------------------------------------------------------------------------------------


def test_states_are_read_from_the_markers(tmp_path):
    fs, out = LocalFileSystem(), tmp_path / "out"
    assert inspect(fs, str(out)) is State.EMPTY
    (out / "ynqa").mkdir(parents=True)
    (out / "ynqa" / "train-a-0.parquet").write_bytes(b"x")
    assert inspect(fs, str(out)) is State.INCOMPLETE  # files, and nothing saying how they got there
    (out / "_SUCCESS").write_bytes(b"")
    assert inspect(fs, str(out)) is State.INCOMPLETE  # a _SUCCESS alone is anyone's (Spark, Hadoop)
    (out / "_manifest.json").write_text(json.dumps({"summary": {}, "identity": {}}))
    assert inspect(fs, str(out)) is State.COMMITTED
    (out / ".staging").mkdir()
    (out / ".staging" / "_run.json").write_text("{}")
    assert inspect(fs, str(out)) is State.STAGING  # an incremental run growing a committed dataset
    (out / ".staging" / "_commit.json").write_text("{}")
    assert inspect(fs, str(out)) is State.COMMITTING


# ---- input and output never overlap ---------------------------------------------------------------


@pytest.mark.parametrize("input_uri, output_uri", [
    ("data", "data"), ("data", "data/out"), ("data/", "./data/sub/../out"), ("data/out/c.jsonl", "data/out"),
    ("data/*.jsonl", "data/out"), ("s3://bucket/corpus", "s3://bucket/corpus/out"),
    ("s3a://bucket/corpus/", "s3://bucket/corpus"), ("s3://bucket/corpus/in", "s3://bucket/corpus"),
])
def test_overlapping_input_and_output_are_refused(tmp_path, monkeypatch, input_uri, output_uri):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match="overlap"):
        check_no_overlap(input_uri, output_uri)


@pytest.mark.parametrize("input_uri, output_uri", [
    ("data", "data2"), ("data/c.jsonl", "data/out"), ("s3://bucket/corpus", "s3://bucket/corpus-out"),
    ("s3://bucket/corpus", "s3://other/corpus"), ("data", "s3://bucket/data"),
])
def test_separate_input_and_output_are_accepted(tmp_path, monkeypatch, input_uri, output_uri):
    monkeypatch.chdir(tmp_path)
    check_no_overlap(input_uri, output_uri)


def test_a_symlink_does_not_hide_an_overlap(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "corpus")
    with pytest.raises(OutputError, match="overlap"):
        check_no_overlap(str(tmp_path / "corpus"), str(tmp_path / "link" / "out"))


def test_overwrite_of_the_input_folder_is_refused_in_one_line_before_cluster_work(random_model, tmp_path):
    corpus = write_jsonl(tmp_path / "same" / "c.jsonl", sample_passages(3))
    done = cli(*job_args(tmp_path / "same", tmp_path / "same", random_model, "--overwrite"), env=NO_CLUSTER)
    assert "overlap" in one_line_error(done)
    assert corpus.read_text().count("\n") == 3 and sorted(p.name for p in (tmp_path / "same").iterdir()) == ["c.jsonl"]


def test_output_inside_the_input_is_refused_even_after_a_completed_run(random_model, tmp_path):
    corpus = write_jsonl(tmp_path / "in" / "c.jsonl", sample_passages(3))
    out = tmp_path / "in" / "out"
    out.mkdir()
    (out / "_SUCCESS").write_bytes(b"")  # as if an older version had completed a run there
    done = cli(*job_args(tmp_path / "in", out, random_model), env=NO_CLUSTER)
    assert "the output lies inside the input" in one_line_error(done)
    assert corpus.exists() and sorted(p.name for p in out.iterdir()) == ["_SUCCESS"]


# ---- the output location --------------------------------------------------------------------------


def test_output_that_is_a_file_is_one_line_before_cluster_work(random_model, tmp_path):
    write_jsonl(tmp_path / "c.jsonl", sample_passages(3))
    (tmp_path / "out").write_text("not a folder")
    done = cli(*job_args(tmp_path / "c.jsonl", tmp_path / "out", random_model), env=NO_CLUSTER)
    assert "is a file" in one_line_error(done)
    assert (tmp_path / "out").read_text() == "not a folder"


def test_unwritable_output_is_one_line_before_cluster_work(random_model, tmp_path):
    write_jsonl(tmp_path / "c.jsonl", sample_passages(3))
    if os.geteuid() == 0:  # root writes through permission bits; sysfs refuses even root
        out = Path("/sys/bonito-ray-test-output")
    else:
        (tmp_path / "locked").mkdir(mode=0o555)
        out = tmp_path / "locked" / "out"
    done = cli(*job_args(tmp_path / "c.jsonl", out, random_model), env=NO_CLUSTER)
    assert f"cannot write to output {out}" in one_line_error(done)


def test_no_cluster_makes_a_run_that_reaches_cluster_work_fail_at_once(random_model, tmp_path):
    """What the refused runs above are run with: were one to reach the cluster, it would fail now, not wait."""
    write_jsonl(tmp_path / "c.jsonl", sample_passages(3))
    done = cli(*job_args(tmp_path / "c.jsonl", tmp_path / "out", random_model), env=NO_CLUSTER)
    assert done.returncode == 1 and f"{FORBID_ENV}=1 forbids" in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "out" / "_SUCCESS").exists()


# ---- --overwrite deletes only what bonito-ray wrote -----------------------------------------------


def test_overwrite_refuses_foreign_files_before_deleting_anything(ray_cluster, random_model, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", sample_passages(3))
    out = tmp_path / "out"
    config = GenerateConfig(input=str(corpus), output=str(out), engine="echo", model=random_model,
                            task_types=["ynqa"])
    generate(config)
    ours = sorted(p.relative_to(out) for p in out.rglob("*"))
    (out / ".notes").write_text("someone's dotfile")
    (out / "reports").mkdir()
    (out / "reports" / "q3.txt").write_text("someone's report")
    with pytest.raises(OutputExistsError, match=r"refusing --overwrite: .*\(\.notes, reports/q3\.txt\)") as refused:
        generate(config, overwrite=True)
    assert "pass --overwrite" not in str(refused.value)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == sorted(
        ours + [Path(".notes"), Path("reports"), Path("reports/q3.txt")])


def test_overwrite_deletes_what_our_records_name_and_refuses_look_alikes(ray_cluster, random_model, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", sample_passages(4))
    out = tmp_path / "out"
    generate(GenerateConfig(input=str(corpus), output=str(out), engine="echo", model=random_model,
                            task_types=["ynqa", "nli"], incremental=True))
    written = json.loads((out / "_manifest.json").read_text())["written"]
    assert written == sorted(str(p.relative_to(out)) for p in out.rglob("*.parquet"))
    assert {w.split("/")[0] for w in written} == {"ynqa", "nli"}
    (out / f".tmp-{'0' * 32}-_manifest.json").write_text("left by a killed write")  # our atomic write's name
    summary = generate(GenerateConfig(input=str(corpus), output=str(out), engine="echo", model=random_model,
                                      task_types=["ynqa"]), overwrite=True)
    assert summary.accepted == {"ynqa": 4}
    assert sorted(p.name for p in out.iterdir()) == [".huggingface.yaml", "_SUCCESS", "_card", "_manifest.json",
                                                     "ynqa"]
    # Files named like ours that no record of ours names are someone else's, whatever their name.
    look_alikes = ["exqa/train-old-0.parquet", "task_type=nli/train-old-0.parquet", ".tmp-backup.tar",
                   "_card/notes.md", "_rejects/stage=corpus/rejects-mine.pq"]
    for name in look_alikes:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"someone's")
        before = sorted(p.relative_to(out) for p in out.rglob("*"))
        with pytest.raises(OutputExistsError, match=f"refusing --overwrite: .*\\({re.escape(name)}\\)"):
            generate(GenerateConfig(input=str(corpus), output=str(out), engine="echo", model=random_model,
                                    task_types=["ynqa"]), overwrite=True)
        assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
        (out / name).unlink()


# ---- one writer per output ------------------------------------------------------------------------


def test_second_run_on_a_leased_output_is_refused_in_one_line(random_model, tmp_path):
    write_jsonl(tmp_path / "c.jsonl", sample_passages(3))
    out = tmp_path / "out"
    with Lease.acquire(LocalFileSystem(), str(out), str(out)) as held:
        done = cli(*job_args(tmp_path / "c.jsonl", out, random_model), env=NO_CLUSTER)
        assert f"is in use by run {held.run_id}" in one_line_error(done)
    assert not (out / LEASE_FILE).exists()  # released


def test_two_runs_started_together_write_each_example_once(joined_cluster, random_model, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", sample_passages(60))
    out = tmp_path / "out"
    args = job_args(corpus, out, random_model, *joined_cluster)
    runs = [subprocess.Popen([sys.executable, "-m", "bonito_ray.cli", "generate", *args], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        outputs = [run.communicate(timeout=CLI_TIMEOUT_SECONDS) for run in runs]  # both pipes read: none fills up
    finally:
        for run in runs:
            run.kill()  # one past the deadline; nothing for one that ended
    results = [(run.returncode, stdout, stderr) for run, (stdout, stderr) in zip(runs, outputs)]
    codes = sorted(code for code, _, _ in results)
    refused = [err for code, _, err in results if code == 2]
    # Either the second was refused while the first ran, or it found the first one's complete dataset.
    assert codes in ([0, 2], [0, 0]), [err[-2000:] for _, _, err in results]
    assert all("is in use by run" in err for err in refused)
    assert ids_and_sources(out) == expected({corpus: 60})


def test_a_bad_lease_ttl_is_one_line_before_cluster_work(random_model, tmp_path):
    write_jsonl(tmp_path / "c.jsonl", sample_passages(3))
    done = cli(*job_args(tmp_path / "c.jsonl", tmp_path / "out", random_model),
               env={**NO_CLUSTER, "BONITO_RAY_LEASE_TTL": "ten"})
    assert "BONITO_RAY_LEASE_TTL='ten' is not a number of seconds" in one_line_error(done)
    assert not (tmp_path / "out").exists()


def test_a_plan_dropped_without_release_does_not_keep_the_output(random_model, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", sample_passages(3))
    config = GenerateConfig(input=str(corpus), output=str(tmp_path / "out"), engine="echo", model=random_model)
    assert plan_job(config).identity["n"] == 1  # planned only to be looked at
    plan = plan_job(config)  # refused if the first plan still held the output
    plan.release()
    assert not (tmp_path / "out").exists()  # the folder it created for its lease is gone too


def test_a_stale_lease_is_taken_over_and_a_live_one_is_not(tmp_path):
    fs, out = LocalFileSystem(), tmp_path / "out"
    out.mkdir()
    stale = {"run_id": "old", "host": "elsewhere", "pid": 1, "heartbeat": time.time() - 60, "ttl": 30}
    (out / LEASE_FILE).write_text(json.dumps(stale))
    with Lease.acquire(fs, str(out), str(out), ttl=30) as taken:
        assert json.loads((out / LEASE_FILE).read_text())["run_id"] == taken.run_id
        with pytest.raises(LeaseHeldError, match=f"in use by run {taken.run_id}"):
            Lease.acquire(fs, str(out), str(out), ttl=30)
    # A holder on this host whose process is gone (a killed run, rerun at once) need not be waited for.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = {**stale, "host": socket.gethostname(), "pid": int(gone.stdout), "heartbeat": time.time()}
    (out / LEASE_FILE).write_text(json.dumps(dead))
    with Lease.acquire(fs, str(out), str(out), ttl=30):
        pass
    # Live elsewhere: refused.
    (out / LEASE_FILE).write_text(json.dumps({**stale, "heartbeat": time.time()}))
    with pytest.raises(LeaseHeldError, match="in use by run old"):
        Lease.acquire(fs, str(out), str(out), ttl=30)


def test_s3_lease_is_created_exclusively_and_taken_over_by_compare_and_swap(s3_endpoint):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    fs, root = resolve_filesystem("s3://corpus/leased", s3_endpoint)
    held = Lease.acquire(fs, root, "s3://corpus/leased", s3_endpoint, ttl=30)
    with pytest.raises(LeaseHeldError, match=f"in use by run {held.run_id}"):
        Lease.acquire(fs, root, "s3://corpus/leased", s3_endpoint, ttl=30)
    held.release()
    assert "Contents" not in client.list_objects_v2(Bucket="corpus", Prefix="leased/")
    stale = {"run_id": "old", "host": "elsewhere", "pid": 1, "heartbeat": time.time() - 60, "ttl": 30}
    client.put_object(Bucket="corpus", Key=f"leased/{LEASE_FILE}", Body=json.dumps(stale).encode())
    store = lease_module._store_for(fs, root, "s3://corpus/leased", s3_endpoint)
    _, stale_tag = store.read()
    with Lease.acquire(fs, root, "s3://corpus/leased", s3_endpoint, ttl=30) as taken:
        assert store.take_over(stale_tag, b"{}") is None  # a second taker of the same stale lease loses
        body = client.get_object(Bucket="corpus", Key=f"leased/{LEASE_FILE}")["Body"].read()
        assert json.loads(body)["run_id"] == taken.run_id


def test_unwritable_s3_output_is_a_clear_error(s3_endpoint):
    with pytest.raises(OutputError, match="cannot write to output s3://no-such-bucket/out"):
        open_output("s3://corpus/in", "s3://no-such-bucket/out", s3_endpoint)


# ---- crash-safe commit: a kill at every step, then a rerun -----------------------------------------

COMMIT_STEPS = ["success-removed", "stale-dropped", "move-1", "moved", "ledger", "manifest", "card", "success"]


@pytest.mark.static
def test_the_kill_test_covers_every_crash_point_of_the_commit():
    source = (ROOT / "bonito_ray" / "commit.py").read_text()
    points = {step.replace("{number}", "1") for step in re.findall(r'_crash_point\(f?"([^"]+)"\)', source)}
    assert points == {"before-journal", "journal", *COMMIT_STEPS}


def crash(args: list[str], step: str, env: dict | None = None) -> None:
    done = cli(*args, env={**(env or {}), CRASH_ENV: step})
    assert done.returncode == CRASH_EXIT_CODE, done.stderr[-3000:]


def rerun(args: list[str], capsys, caplog) -> tuple[int, str, str]:
    """The CLI run again in this process (a rerun that finishes in planning needs no process of its own):
    exit code, stdout and the log."""
    from bonito_ray.cli import main

    caplog.clear()
    capsys.readouterr()
    with caplog.at_level(logging.INFO):
        code = main(["generate", *args])
    return code, capsys.readouterr().out, caplog.text


def test_a_kill_before_the_journal_resumes_without_duplicates(joined_cluster, random_model, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", sample_passages(12))
    out = tmp_path / "out"
    crash(job_args(corpus, out, random_model, *joined_cluster), "before-journal")
    assert inspect(LocalFileSystem(), str(out)) is State.STAGING
    summary = generate(GenerateConfig(input=str(corpus), output=str(out), engine="echo", model=random_model,
                                      task_types=["ynqa"], passage_tokens=64, rows_per_file=3))
    assert summary.resumed and summary.skipped_done == 12
    assert ids_and_sources(out) == expected({corpus: 12})


def test_incremental_kills_at_every_commit_step_give_one_full_run(joined_cluster, random_model, tmp_path, capsys,
                                                                  caplog, monkeypatch):
    corpus = tmp_path / "bucket"
    texts = sample_passages(40)
    day1 = write_jsonl(corpus / "day1.jsonl", texts[:10])
    day2 = write_jsonl(corpus / "day2.jsonl", texts[10:20])
    day3 = write_jsonl(corpus / "day3.jsonl", texts[20:30])
    base = tmp_path / "base"
    generate(echo_job(corpus, base, random_model, incremental=True))
    # Next day: day4 arrives, day1 is corrected (one more line), day2 is deleted.
    write_jsonl(corpus / "day1.jsonl", texts[:10] + ["Clause 99: a late correction, appended to the first day."])
    day4 = write_jsonl(corpus / "day4.jsonl", texts[30:40])
    day2.unlink()
    want = expected({day1: 11, day3: 10, day4: 10})

    before_journal = tmp_path / "before-journal"
    shutil.copytree(base, before_journal)
    crash(job_args(corpus, before_journal, random_model, "--incremental", *joined_cluster), "before-journal")
    resumed = generate(echo_job(corpus, before_journal, random_model, incremental=True))
    assert resumed.resumed and resumed.skipped_done >= 21  # day1's and day4's staged rows were not made again
    assert ids_and_sources(before_journal) == want

    # All staged, the journal written, nothing moved; then a kill at each step of the commit, rolled forward
    # by the rerun's planning (no cluster). An incremental run's commit has every step: stale sources dropped
    # and the ledger rewritten too.
    snapshot = tmp_path / "journal-written"
    shutil.copytree(base, snapshot)
    crash(job_args(corpus, snapshot, random_model, "--incremental", *joined_cluster), "journal")
    assert inspect(LocalFileSystem(), str(snapshot)) is State.COMMITTING
    monkeypatch.setenv(FORBID_ENV, "1")  # the in-process reruns too
    for step in COMMIT_STEPS:
        out = tmp_path / step
        shutil.copytree(snapshot, out)
        args = job_args(corpus, out, random_model, "--incremental")
        crash(args, step, env=NO_CLUSTER)
        assert not (out / "_SUCCESS").exists() or step == "success"
        code, stdout, log = rerun(args, capsys, caplog)
        assert code == 0, (step, log[-3000:])
        assert "nothing to do" in stdout and "finishing the commit of an interrupted run" in log
        assert ids_and_sources(out) == want, step
        assert inspect(LocalFileSystem(), str(out)) is State.COMMITTED and not (out / ".staging").exists()
        assert json.loads((out / "_ledger.json").read_text()).keys() == {str(day1), str(day3), str(day4)}
        manifest = json.loads((out / "_manifest.json").read_text())
        assert sum(f["rows"] for f in manifest["summary"]["files"]) == len(want), step
        # The card is part of the commit: written by the roll-forward when the kill came before it.
        assert len(manifest["runs"]) == 2 and manifest["runs"][-1]["run_id"] in (out / "_card/README.md").read_text()


# ---- a completed rerun does nothing, and says so --------------------------------------------------


def test_completed_rerun_does_no_cluster_work_and_says_it_did_nothing(ray_cluster, random_model, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", sample_passages(5))
    out = tmp_path / "out"
    generate(echo_job(corpus, out, random_model))
    files = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = cli(*job_args(corpus, out, random_model), env=NO_CLUSTER)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.startswith("bonito-ray: nothing to do: this job's dataset is already complete")
    assert "holds 5 examples" in again.stdout and "wrote" not in again.stdout
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == files


def test_a_failed_run_leaving_only_a_run_record_starts_over(ray_cluster, random_model, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", sample_passages(4))
    out = tmp_path / "out"
    (out / ".staging").mkdir(parents=True)
    (out / ".staging" / "_run.json").write_text(json.dumps({"input_fingerprint": "of a listing since changed"}))
    summary = generate(GenerateConfig(input=str(corpus), output=str(out), engine="echo", model=random_model,
                                      task_types=["ynqa"]))
    assert summary.accepted == {"ynqa": 4} and not summary.resumed

"""The console of a good run (bonito_ray.console): bonito-ray's summary, none of Ray's known noise;
``--verbose`` brings Ray's own logs and progress back. Real CLI processes joining the session cluster."""

import re

from bonito_ray.config import DEMO_MODEL
from tests.corpus_files import write_jsonl
from tests.test_output_lifecycle import cli, job_args

# Lines of Ray's and transformers' own known noise on a good run (bonito-ray's lines have no tab).
NOISE = re.compile(r"^\S+ \S+\t(WARNING|ERROR)|Traceback|may be ignored|deprecated|Token authentication|"
                   r"Loading weights")
RAY_PROGRESS = re.compile(r"Starting execution of Dataset|Running Dataset")


def _run(tmp_path, random_model, name: str, *extra: str):
    passages = [f"Passage {i} about otters and the rivers they live in." for i in range(4)]
    corpus = write_jsonl(tmp_path / f"{name}.jsonl", passages)
    done = cli(*job_args(corpus, tmp_path / name, random_model, *extra))
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def test_a_good_run_prints_the_summary_and_no_ray_noise(ray_cluster, tmp_path, random_model):
    # The hf engine on the demo model, whose generation config holds sampling defaults: a replica
    # actor (Ray's `concurrency` deprecation) and transformers' "may be ignored" warning.
    console = _run(tmp_path, random_model, "quiet", "--engine", "hf", "--model", DEMO_MODEL, "--max-tokens", "2")
    assert "bonito-ray: wrote " in console and "accepted:" in console
    noise = [line for line in console.splitlines() if NOISE.search(line) or RAY_PROGRESS.search(line)]
    assert not noise, "\n".join(noise)


def test_verbose_brings_rays_progress_back(ray_cluster, tmp_path, random_model):
    console = _run(tmp_path, random_model, "verbose", "--verbose")
    assert "bonito-ray: wrote 4 examples" in console
    assert RAY_PROGRESS.search(console), console[-3000:]


def test_only_rays_token_auth_on_notice_is_dropped():
    # Ray's own warnings, emitted by Ray's own functions: "on" (its default) is noise, "off" is not.
    import logging

    from ray._private.authentication import authentication_token_setup as ray_auth

    from bonito_ray.console import quiet_token_auth_notice

    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    auth_logger = logging.getLogger(ray_auth.__name__)
    auth_logger.addHandler(handler)
    try:
        quiet_token_auth_notice(verbose=False)
        ray_auth._warn_token_auth_enabled()
        ray_auth._warn_token_auth_disabled()
        assert [m.split(".")[0] for m in seen] == ["Token authentication is disabled for this Ray cluster"]
        quiet_token_auth_notice(verbose=True)
        ray_auth._warn_token_auth_enabled()
        assert seen[-1].startswith("Token authentication is enabled")
    finally:
        auth_logger.removeHandler(handler)


def test_quiet_spends_ray_datas_one_time_warnings():
    from ray.util import debug
    from ray.util.debug import log_once

    from bonito_ray.console import quiet_ray_data

    debug._logged.difference_update({"cpu_warning", "ray_data_progress_manager_disabled"})  # as in a new driver
    quiet_ray_data(verbose=False)
    assert not log_once("cpu_warning") and not log_once("ray_data_progress_manager_disabled")

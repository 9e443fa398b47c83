"""Configuration: defaults, YAML, CLI precedence and clear errors."""

import pytest

from bonito_ray.cli import build_parser, config_overrides, main
from bonito_ray.config import DEMO_MODEL, ConfigError, GenerateConfig, load_config


def test_defaults_follow_the_authors():
    config = GenerateConfig(input="in", output="out")
    assert (config.max_tokens, config.top_p, config.temperature, config.n) == (256, 0.95, 0.5, 1)
    assert config.engine == "hf" and config.model == DEMO_MODEL and config.context_column == "text"


def test_yaml_keys_and_cli_overrides(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("input: corpus.jsonl\noutput: out\ntask-types: [ynqa, extractive question answering]\n"
                    "n: 3\ntemperature: 0.7\nengine_kwargs: {max_model_len: 2048}\n")
    config = load_config(str(path), {"temperature": 0.2, "seed": None})
    assert config.task_types == ["ynqa", "exqa"]
    assert config.n == 3 and config.temperature == 0.2 and config.seed is None
    assert config.engine_kwargs == {"max_model_len": 2048}


def test_cli_flags_map_to_config_keys():
    args = build_parser().parse_args(["generate", "--input", "a", "--output", "b", "--task-types", "ynqa,nli",
                                      "--top-p", "0.9", "--engine-kwargs", '{"tensor_parallel_size": 2}'])
    config = load_config(None, config_overrides(args))
    assert config.task_types == ["ynqa", "nli"] and config.top_p == 0.9
    assert config.engine_kwargs == {"tensor_parallel_size": 2}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"output": "o"}, "input is required"),
        ({"input": "i"}, "output is required"),
        ({"input": "i", "output": "o", "n": 0}, "n must be >= 1"),
        ({"input": "i", "output": "o", "top_p": 1.5}, "top_p"),
        ({"input": "i", "output": "o", "n": "three"}, "n must be an integer"),
        ({"input": "i", "output": "o", "engine": "gpt"}, "engine must be one of"),
        ({"input": "i", "output": "o", "engine_kwargs": "[1]"}, "engine_kwargs must be a JSON object"),
        ({"input": "i", "output": "o", "typo_key": 1}, "unknown configuration key"),
    ],
)
def test_bad_values_are_clear_errors(values, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, values)


def test_unreadable_or_malformed_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(tmp_path / "missing.yaml"), {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(str(bad), {})


@pytest.fixture
def no_cluster_work(monkeypatch):
    """Fail the test if the CLI reaches for Ray at all (whether or not a cluster is already up)."""
    from bonito_ray import cli

    monkeypatch.setattr(cli.cluster, "connect", lambda *a, **k: pytest.fail("the CLI connected to Ray"))
    monkeypatch.setattr("bonito_ray.pipeline.generate", lambda *a, **k: pytest.fail("the CLI started the job"))


def test_unknown_task_type_fails_before_any_cluster_work(tmp_path, capsys, no_cluster_work):
    code = main(["generate", "--input", str(tmp_path), "--output", str(tmp_path / "o"), "--task-types", "poetry"])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown task type 'poetry'" in err and "ynqa" in err


def test_a_model_that_cannot_be_loaded_fails_before_any_cluster_work(tmp_path, capsys, no_cluster_work):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "Clause 1: the tenant pays rent on the first day of the month."}\n')
    code = main(["generate", "--input", str(corpus), "--output", str(tmp_path / "o"),
                 "--model", str(tmp_path / "not-a-model")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bonito-ray: error: cannot load model") and "not-a-model" in err[0]


# corpus.py: a compressed stream cut short, caught where it is read; s3_preflight.py: no answer in time,
# classified into the one-line S3AccessError where it is caught
INTERNAL_ERRORS = {"StreamError", "DeadlinePassed"}


@pytest.mark.static
def test_every_error_a_user_can_cause_is_a_user_error():
    """The CLI shows ``UserError``s in one line (bonito_ray.errors); an error class of bonito-ray's own that
    is not one would reach the user as a traceback."""
    import importlib
    import inspect
    import pkgutil

    import bonito_ray
    from bonito_ray.errors import UserError

    found = {}
    for module in pkgutil.walk_packages(bonito_ray.__path__, "bonito_ray."):
        if module.name in ("bonito_ray.engines.vllm", "bonito_ray.engines.hf") or module.name.endswith("train_loop"):
            continue  # they import vLLM or torch, and raise no user errors
        for name, value in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
            if issubclass(value, Exception) and value.__module__ == module.name:
                found[name] = value
    assert {"ConfigError", "OutputExistsError", "AdaptError", "LeaseHeldError"} <= found.keys()
    assert sorted(n for n, c in found.items() if not issubclass(c, UserError)) == sorted(INTERNAL_ERRORS)


@pytest.mark.static
def test_the_engine_registry_is_the_one_place_engines_are_told_apart():
    import re
    from pathlib import Path

    import bonito_ray
    from bonito_ray import engines

    for engine in engines.ENGINES.values():
        targets = [engine.stage, engine.window] + ([engine.check] if engine.check else [])
        assert all(callable(engines._load(t)) for t in targets), engine
    library = Path(bonito_ray.__file__).parent
    asked = [f"{p.relative_to(library)}: {m}" for p in library.rglob("*.py") if "engines" not in p.parts
             for m in re.findall(r"engine\s*(?:==|!=|in \()\s*\S+", p.read_text())]
    assert asked == [], "outside bonito_ray/engines, engines are told apart by the registry's fields only"


def test_every_setting_has_a_flag_and_the_manifests_command_gives_the_job_back():
    """The flags come from the configuration's fields (``bonito_ray.config.option``): every field has one, and
    ``command()`` (written to the manifest) parses back to the same configuration, switches and lists included."""
    import dataclasses
    import shlex

    from bonito_ray.config import GenerateConfig, cli_flag

    parser = build_parser()
    generate_flags = {a for action in parser._subparsers._group_actions[0].choices["generate"]._actions
                      for a in action.option_strings}
    fields = dataclasses.fields(GenerateConfig)
    assert all(f.metadata.get("help") and cli_flag(f) in generate_flags for f in fields)
    config = GenerateConfig(input="in.jsonl", output="out", task_types=["ynqa", "nli"], dedup=False, task_dedup=False,
                            incremental=True, validators=["bonito_ray.validators:degenerate",
                                                         "bonito_ray.validators:truncated"],
                            engine_kwargs={"max_model_len": 512}, seed=3, temperature=0.25, passage_tokens=300,
                            license="cc-by-4.0", allow_external_endpoint=False)
    again = load_config(None, config_overrides(parser.parse_args(shlex.split(config.command())[1:])))
    assert again == config
    assert "--no-task-dedup" in config.command() and "--validator bonito_ray.validators:truncated" in config.command()
    # in --help's order, the input first (the settings classes declare the output before it)
    command = config.command()
    assert command.startswith("bonito-ray generate --input in.jsonl ")
    assert command.index("--incremental") < command.index("--output out") < command.index("--task-types ynqa,nli")


# A value of the wrong type, from YAML (or a flag, or the Python API): each was a TypeError, AttributeError or
# UnicodeDecodeError traceback, or was taken as it was.
WRONG_TYPES = [
    ("input: 123", "input must be a string, got 123 (int)"),
    ("s3_endpoint: 123", "s3_endpoint must be a string or null, got 123 (int)"),
    ("ray_address: 5", "ray_address must be a string or null, got 5 (int)"),
    ("task_types: 5", "task_types must be a list of strings (or one comma-separated string), got 5 (int)"),
    ("validators: [123]", "validators must be a list of strings (or one comma-separated string), got [123] (list)"),
    ("output: [a, b]", "output must be a string, got ['a', 'b'] (list)"),
    ("model: 123", "model must be a string, got 123 (int)"),
    ("context_column: [text]", "context_column must be a string, got ['text'] (list)"),
    ("dedup: 'yes'", "dedup must be true or false, got 'yes' (str)"),
    ("n: .inf", "n must be an integer, got inf (float)"),
    ("temperature: .nan", "temperature must be a finite number, got nan (float)"),
    ("engine_kwargs: [1]", "engine_kwargs must be a mapping (or a JSON object's text), got [1] (list)"),
]


def config_file(tmp_path, line: str):
    """A config file with ``line`` and, unless it sets them, an input and an output."""
    path = tmp_path / "bad.yaml"
    key = line.split(":")[0]
    path.write_text("".join(f"{k}: {v}\n" for k, v in (("input", "c.jsonl"), ("output", "out")) if k != key) + line)
    return path


@pytest.mark.parametrize(("line", "message"), WRONG_TYPES)
def test_a_value_of_the_wrong_type_names_the_file_the_key_what_it_takes_and_what_it_got(tmp_path, line, message):
    path = config_file(tmp_path, line)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), {})
    assert str(caught.value) == f"config file {path}: {message}"


def test_a_flag_that_sets_a_key_overrides_the_files_value_of_the_wrong_type(tmp_path):
    config = load_config(str(config_file(tmp_path, "model: 123")), {"model": "org/model"})
    assert config.model == "org/model"


def test_the_python_api_gets_the_same_check_and_numbers_become_the_fields_type():
    with pytest.raises(ConfigError, match=r"^num_replicas must be an integer, got '2' \(str\)$"):
        GenerateConfig(input="i", output="o", num_replicas="2")
    with pytest.raises(ConfigError, match=r"^max_tokens must be an integer, got True \(bool\)$"):
        GenerateConfig(input="i", output="o", max_tokens=True)
    with pytest.raises(ConfigError, match=r"^top_p must be a finite number, got 1000000000"):
        GenerateConfig(input="i", output="o", top_p=10 ** 400)  # too large for a float: no OverflowError
    config = GenerateConfig(input="i", output="o", n=2.0, temperature=1, validators=("bonito_ray.validators:truncated",))
    assert (config.n, type(config.n), config.temperature, type(config.temperature)) == (2, int, 1.0, float)
    assert config.validators == ["bonito_ray.validators:truncated"]


def test_the_self_guide_config_gets_the_same_check(tmp_path):
    from bonito_ray.self_guide.config import load_config as load_self_guide_config

    path = tmp_path / "sg.yaml"
    path.write_text("spec: [a.yaml]\noutput: out\n")
    with pytest.raises(ConfigError, match=r"^config file .*sg.yaml: spec must be a string, got \['a.yaml'\] \(list\)$"):
        load_self_guide_config(str(path), {})


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("input: café.jsonl\noutput: out\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"^config file .*latin1.yaml is not UTF-8 text: byte 0xe9 at offset 10$"):
        load_config(str(path), {})


@pytest.mark.parametrize(("line", "message"), WRONG_TYPES[:4] + [("", "not UTF-8 text")])
def test_the_cli_prints_a_wrong_config_value_in_one_line(tmp_path, capsys, no_cluster_work, line, message):
    path = config_file(tmp_path, line)
    if not line:
        path.write_bytes(b"input: \xff\noutput: out\n")
    assert main(["generate", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"bonito-ray: error: config file {path}") and message in err[0]


def test_the_console_script_prints_a_wrong_config_value_in_one_line_without_a_traceback(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    path = config_file(tmp_path, "task_types: 5")
    done = subprocess.run([sys.executable, "-m", "bonito_ray.cli", "generate", "--config", str(path)],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[1],
                          env={**os.environ, "RAY_ADDRESS": "127.0.0.1:1"})  # nobody listens there: no cluster work
    assert done.returncode == 2 and done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1:] == [f"bonito-ray: error: config file {path}: {WRONG_TYPES[3][1]}"]

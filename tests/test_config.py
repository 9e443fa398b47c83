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
    monkeypatch.setattr(cli, "generate", lambda *a, **k: pytest.fail("the CLI started the job"))


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


INTERNAL_ERRORS = {"StreamError"}  # corpus.py: a compressed stream cut short, caught where it is read


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

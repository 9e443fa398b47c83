"""Each setting's check lives beside it (``bonito_ray.config.option(check=..., choices=...)``) in the one settings
class that declares it, is run once by ``check_settings``, and gives its own words; the flags are listed in --help
by what a user is doing (``option(group=...)``). Pure: no Ray, no model is loaded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import bonito_ray
from bonito_ray.cli import build_parser
from bonito_ray.config import FLAG_GROUPS, ConfigError, GenerateConfig, cli_flag
from bonito_ray.self_guide.config import SelfGuideConfig

SPEC = str(Path(__file__).resolve().parents[1] / "jobs" / "examples" / "tasks" / "clause_party.yaml")
# Each job configuration, and the least it needs to be built.
JOBS = {GenerateConfig: {"input": "corpus.jsonl", "output": "out"}, SelfGuideConfig: {"spec": SPEC, "output": "out"}}
CONFIG_MODULES = [Path(bonito_ray.__file__).parent / "config.py",
                  Path(bonito_ray.__file__).parent / "self_guide" / "config.py"]


def settings_classes() -> set[type]:
    """The job configurations and every settings class mixed into them."""
    return {base for job in JOBS for base in job.__mro__ if dataclasses.is_dataclass(base)}


def checked_fields(config_class: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(config_class) if "check" in f.metadata or "choices" in f.metadata]


def refused(f: dataclasses.Field):
    """A value the field's own check refuses."""
    return f.metadata["check"].refused if "check" in f.metadata else "no-such-choice"


def own_message(f: dataclasses.Field, value) -> str:
    if "check" in f.metadata:
        return f.metadata["check"].message(f)
    return f"{f.name} must be one of {', '.join(f.metadata['choices'])}, got {value!r}"


@pytest.mark.static
def test_every_checked_setting_is_declared_by_one_settings_class():
    """A setting that two classes declare would have two checks to keep alike (as self-guide's rows_per_file had
    none while generate's was checked)."""
    declared: dict[str, list[str]] = {}
    for cls in settings_classes():
        for f in dataclasses.fields(cls):
            if f.name in vars(cls).get("__annotations__", {}) and ("check" in f.metadata or "choices" in f.metadata):
                declared.setdefault(f.name, []).append(cls.__name__)
    assert declared, "no setting has a check: the walk found nothing"
    assert {name: classes for name, classes in declared.items() if len(classes) > 1} == {}


@pytest.mark.static
def test_no_check_is_written_out_again_by_hand():
    """A setting's check is its field's (``option(check=...)``): its error's words written anywhere in the
    configuration modules would be a second check of the same thing."""
    sources = "\n".join(path.read_text(encoding="utf-8") for path in CONFIG_MODULES)
    messages = {f.metadata["check"].message(f) for job in JOBS for f in checked_fields(job) if "check" in f.metadata}
    assert len(messages) > 30
    assert sorted(m for m in messages if m in sources) == []


@pytest.mark.parametrize("job", JOBS, ids=lambda job: job.__name__)
def test_each_check_refuses_its_wrong_value_in_its_own_words(job):
    cases = checked_fields(job)
    assert len(cases) > 15
    for f in cases:
        value = refused(f)
        with pytest.raises(ConfigError) as caught:
            job(**JOBS[job] | {f.name: value})
        assert str(caught.value) == own_message(f, value), f.name


def test_each_check_takes_its_default():
    """The defaults pass their own checks, and so the refusals above are the check's, not any value's."""
    for job in JOBS:
        for f in checked_fields(job):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if default in (None, "") or f.name in JOBS[job]:
                continue  # unset optional settings are not checked; required ones have no default to take
            assert (f.metadata["check"].ok(default) if "check" in f.metadata
                    else default in f.metadata["choices"]), f.name


def test_the_shared_settings_are_checked_for_self_guide_too():
    """Self-guide's output settings are generate's: rows_per_file and license were unchecked there before."""
    for values, message in (({"rows_per_file": 0}, "rows_per_file must be >= 1"),
                            ({"license": ""}, "license must not be empty"),
                            ({"output": ""}, "output is required (--output PATH or 'output:' in the config file)")):
        for job in JOBS:
            with pytest.raises(ConfigError, match=rf"^{message.replace('(', '[(]').replace(')', '[)]')}$"):
                job(**JOBS[job] | values)


def test_checks_between_settings_stay_with_their_class():
    with pytest.raises(ConfigError, match="^passage_overlap must be less than half of passage_tokens$"):
        GenerateConfig(**JOBS[GenerateConfig], passage_tokens=32, passage_overlap=16)
    with pytest.raises(ConfigError, match="^min_weak_examples must be >= 0 and <= max_weak_examples$"):
        SelfGuideConfig(**JOBS[SelfGuideConfig], min_weak_examples=3, max_weak_examples=2)
    with pytest.raises(ConfigError, match="^engine_kwargs must be a JSON object"):
        SelfGuideConfig(**JOBS[SelfGuideConfig], engine_kwargs="[1]")


@pytest.mark.parametrize("command, job", [("generate", GenerateConfig), ("self-guide", SelfGuideConfig)])
def test_help_lists_every_setting_in_a_section_by_what_a_user_is_doing(command, job):
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    sections = {group.title: [a for action in group._group_actions for a in action.option_strings]
                for group in sub._action_groups if group._group_actions}
    assert sections.pop("options") == ["-h", "--help"]  # argparse's own section holds nothing of ours
    assert list(sections) == [title for title in FLAG_GROUPS if title in sections]
    assert {cli_flag(f) for f in dataclasses.fields(job)} <= {flag for flags in sections.values() for flag in flags}
    assert {"--config", "--overwrite", "--log-level"} <= {flag for flags in sections.values() for flag in flags}
    assert len(sections) >= 8


def test_a_switchs_default_reads_on_or_off():
    sub = build_parser()._subparsers._group_actions[0].choices["self-guide"]
    helps = {a.option_strings[0]: a.help for a in sub._actions}
    assert helps["--noise-filter"].endswith("(default: on)") and helps["--verbose"].endswith("(default: off)")

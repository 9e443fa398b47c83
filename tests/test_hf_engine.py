"""The hf engine's generator, driven directly on a tiny random model (no Ray needed)."""

import pyarrow as pa
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bonito_ray.engines.hf import HFGenerator
from bonito_ray.prompt import build_prompt


@pytest.fixture(scope="module")
def generator(random_model):
    return HFGenerator(random_model)


def requests(contexts, **params):
    sampling = {"max_tokens": 12, "temperature": 0.5, "top_p": 0.95, "seed": None} | params
    return pa.Table.from_pylist([{"prompt": build_prompt(c, "ynqa"), "sampling_params": sampling} for c in contexts])


def texts(table):
    return table.column("generated_text").to_pylist()


def test_output_contract(generator):
    out = generator(requests(["Rent is due.", "A much longer passage about the tenant and the landlord."], seed=1))
    assert out.column_names[-5:] == ["generated_text", "num_input_tokens", "num_generated_tokens", "finish_reason",
                                     "engine_error"]
    assert out.column("engine_error").to_pylist() == [None, None]
    assert all(0 < n <= 12 for n in out.column("num_generated_tokens").to_pylist())
    # cut at max_tokens (12) unless the end-of-sequence token came first
    for n, finish in zip(out.column("num_generated_tokens").to_pylist(), out.column("finish_reason").to_pylist()):
        assert finish == "stop" if n < 12 else finish in ("stop", "length")
    tokenizer = generator.tokenizer
    assert out.column("num_input_tokens").to_pylist() == [
        len(tokenizer(build_prompt(c, "ynqa"))["input_ids"])
        for c in ["Rent is due.", "A much longer passage about the tenant and the landlord."]]


def test_same_seed_same_text_whatever_the_batch(generator):
    alone = texts(generator(requests(["Rent is due."], seed=7)))
    in_batch = texts(generator(requests(["A different, longer passage goes first here.", "Rent is due."], seed=7)))
    assert alone[0] == in_batch[1]
    assert texts(generator(requests(["Rent is due."], seed=7))) == alone


def test_different_seeds_sample_differently(generator):
    samples = {texts(generator(requests(["Rent is due."], seed=s, temperature=1.0)))[0] for s in range(6)}
    assert len(samples) > 1


def test_temperature_zero_is_greedy_like_transformers(random_model, generator):
    prompt = build_prompt("Rent is due.", "ynqa")
    tokenizer = AutoTokenizer.from_pretrained(random_model)
    model = AutoModelForCausalLM.from_pretrained(random_model)
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.inference_mode():
        reference = model.generate(**ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    expected = tokenizer.decode(reference[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert texts(generator(requests(["Rent is due."], temperature=0.0))) == [expected]


def test_max_tokens_is_per_row(generator):
    table = pa.Table.from_pylist([
        {"prompt": build_prompt("Rent is due.", "ynqa"),
         "sampling_params": {"max_tokens": m, "temperature": 1.0, "top_p": 1.0, "seed": 3}} for m in (2, 9)])
    assert generator(table).column("num_generated_tokens").to_pylist() == [2, 9]


def test_prompt_longer_than_the_window_is_an_engine_error_not_a_crash(generator):
    out = generator(requests(["word " * 2000, "Rent is due."], seed=1))
    errors = out.column("engine_error").to_pylist()
    assert "window is 512" in errors[0] and errors[1] is None
    assert texts(out)[1]


@pytest.mark.parametrize("architecture", ["gpt2", "mistral"])
def test_other_architectures(architecture, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel, MistralConfig, MistralForCausalLM

    from tests.tiny_models import build_tokenizer, sample_passages, save

    tokenizer = build_tokenizer(sample_passages(20))
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id}
    if architecture == "gpt2":  # no pad token and n_positions instead of max_position_embeddings
        model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2,
                                           n_positions=256, **ids))
        tokenizer.pad_token = None
    else:
        model = MistralForCausalLM(MistralConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                                 num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                                 max_position_embeddings=256, **ids))
    generator = HFGenerator(save(model, tokenizer, tmp_path / architecture))
    assert generator.window == 256
    out = generator(requests(["Rent is due.", "A longer passage about the landlord."], seed=2))
    assert out.column("engine_error").to_pylist() == [None, None]
    assert all(n > 0 for n in out.column("num_generated_tokens").to_pylist())

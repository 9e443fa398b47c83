"""The demo model's training recipe: copy pointers and the supervised copy head."""

import random
import sys
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs" / "dev"))

import train_demo_model as recipe  # noqa: E402
from make_demo_corpus import build_corpus  # noqa: E402


def test_copy_sources_finds_every_occurrence():
    prompt = [5, 1, 2, 3, 9, 1, 2, 3]
    assert recipe.copy_sources(prompt, [1, 2, 3]) == [(0, [1, 5]), (1, [2, 6]), (2, [3, 7])]


def test_copy_sources_skips_a_first_token_spelled_differently_in_the_passage():
    # " This" (with a space) in the output, "This" at the start of the passage.
    assert recipe.copy_sources([4, 2, 3, 8], [7, 2, 3]) == [(1, [1]), (2, [2])]
    assert recipe.copy_sources([4, 2, 3, 8], [7, 6]) == []


@pytest.fixture(scope="module")
def encoded():
    passages = build_corpus(extra_train=0)[0][:12]
    groups = recipe.make_groups(passages, rounds=1, seed=0)
    tokenizer = recipe.train_tokenizer([g.prompt + t for g in groups for t in g.targets], 600)
    return groups, tokenizer, recipe.encode_groups(tokenizer, groups)


def test_every_copied_output_token_points_at_the_same_token_in_the_passage(encoded):
    groups, tokenizer, rows = encoded
    for group, row in zip(groups, rows, strict=True):
        assert bool(row.pointers) == group.copied
        # Every target of a copied type gets pointers, each at the token it predicts.
        assert len({row.segment[query] for query, _ in row.pointers}) == (len(group.targets) if group.copied else 0)
        for query, keys in row.pointers:
            assert keys and all(row.segment[key] == 0 for key in keys)
            assert all(row.input_ids[key] == row.labels[query] for key in keys)


def tiny_model(vocab_size: int, attn_implementation: str = "sdpa") -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=recipe.MAX_POSITIONS,
        attn_implementation=attn_implementation,
    ))


def test_packed_targets_do_not_see_each_other(encoded):
    """Training runs sdpa with collate's boolean mask: a target's logits ignore the other targets."""
    _, tokenizer, rows = encoded
    model = tiny_model(len(tokenizer))
    batch = recipe.collate(rows[:2], tokenizer.pad_token_id)
    segment = torch.tensor(rows[0].segment)
    last = segment == segment.max()
    changed = batch["input_ids"].clone()
    changed[0, : len(segment)][last] = 7
    logits = [model(input_ids=ids, position_ids=batch["position_ids"], attention_mask=batch["attention_mask"])
              .logits[0, : len(segment)][~last] for ids in (batch["input_ids"], changed)]
    torch.testing.assert_close(logits[0], logits[1])


def test_copy_head_probe_computes_the_heads_own_attention(encoded):
    _, tokenizer, rows = encoded
    model = tiny_model(len(tokenizer), "eager")  # the implementation that returns attention weights
    probe = recipe.CopyHeadProbe(model, heads=2)
    batch = recipe.collate(rows[:4], tokenizer.pad_token_id)
    visible = batch["attention_mask"]
    # The eager implementation adds a 4D mask to the scores, so it takes an additive one.
    additive = torch.zeros(visible.shape).masked_fill(~visible, torch.finfo(torch.float32).min)
    out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], attention_mask=additive,
                output_attentions=True)
    recomputed = probe.scores().masked_fill(~visible, float("-inf")).softmax(-1)
    torch.testing.assert_close(recomputed, out.attentions[-1][:, :2])


def test_copy_head_loss_teaches_the_head_to_point(encoded):
    _, tokenizer, rows = encoded
    model = tiny_model(len(tokenizer))
    probe = recipe.CopyHeadProbe(model, heads=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = recipe.collate([r for r in rows if r.pointers][:4], tokenizer.pad_token_id)
    losses = []
    for _ in range(40):
        model.model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"],
            attention_mask=batch["attention_mask"],
        )
        loss = probe.loss(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_targets_use_bonitos_format_with_a_space_before_the_output():
    passage = build_corpus(extra_train=0)[0][0]
    target = recipe.bonito_target(*recipe.exqa_target(passage, random.Random(0)))
    task_input, output = target.split("\n<|pipe|>\n ")
    assert recipe.CONTEXT_PLACEHOLDER in task_input and output in passage.text

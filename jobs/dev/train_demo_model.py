"""Train the small demo model that speaks Bonito's format, from scratch, on CPU.

Training pairs are built from the synthetic corpus of ``jobs/examples/make_demo_corpus.py``,
whose generator knows the facts behind every sentence. For each passage and task type the
target is a meta-template (several instruction phrasings per type, ``{{context}}`` where the
passage belongs) filled with a question/hypothesis and its answer, in Bonito's output format::

    prompt = build_prompt(passage, task_type)   # "<|tasktype|>\\n...<|task|>\\n"
    target = task_input + "\\n<|pipe|>\\n " + task_output + EOS

A byte-level BPE tokenizer and a small Llama are trained here (loss on the target only) and
saved with ``save_pretrained`` so ``AutoTokenizer`` / ``AutoModelForCausalLM`` load them.

What makes a model this small answer from passages it has never seen (rather than with values
it remembers from training) is two things, both measured on the held-out passages: thousands
of distinct training passages, so that no value repeats enough to be memorised, and a head of
the last layer taught where each copied output token stands in the passage
(:class:`CopyHeadProbe`).

Usage: ``python jobs/dev/train_demo_model.py [--output-dir bonito_ray/demo_model] [--steps N] [--seed S]``
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from bonito_ray.config import DEMO_MODEL
from bonito_ray.prompt import CONTEXT_PLACEHOLDER, SEPARATOR, build_prompt

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))  # make_demo_corpus lives next to the data it writes

from make_demo_corpus import DEFAULT_SEED as CORPUS_SEED  # noqa: E402
from make_demo_corpus import Passage, build_corpus  # noqa: E402

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
# Bonito's markers are ordinary (non-special) added tokens: one id each, and they survive
# ``decode(skip_special_tokens=True)`` so ``parse_generation`` can split on ``<|pipe|>``.
MARKERS = ("<|tasktype|>", "<|context|>", "<|task|>", SEPARATOR, CONTEXT_PLACEHOLDER)
MAX_POSITIONS = 512

YES_NO_LABELS = ("Yes", "No")

# ---------------------------------------------------------------------------------------------
# Meta-templates: (instruction with {{context}}, output). ``{q}``/``{h}`` is the question or
# hypothesis, ``{q_lc}`` the question with a lower-case first letter.
# ---------------------------------------------------------------------------------------------

C = CONTEXT_PLACEHOLDER
EXQA_TEMPLATES = (
    C + "\n\nExtract the answer to the question from the text above.\nQuestion: {q}\nAnswer:",
    "Read the passage below and answer the question with a phrase taken from it.\n\n" + C
    + "\n\nQuestion: {q}",
    C + "\n\nQ: {q}\nA:",
    "Passage: " + C + "\n\nUsing only words from the passage, answer the following question. {q}",
    "Given the following document, {q_lc}\n\n" + C,
)
YNQA_TEMPLATES = (
    C + "\n\nBased on the passage above, {q_lc} Yes or no?",
    "Passage: " + C + "\n\nQuestion: {q}\nAnswer yes or no.",
    'Read the text and answer the question with "Yes" or "No".\n\n' + C + "\n\n{q}",
    C + "\n\nQ: {q} (yes/no)",
)


@dataclass(frozen=True)
class NliTemplate:
    """An NLI phrasing and how it names entailment, neutral and contradiction."""

    instruction: str
    labels: dict[str, str]


NLI_TEMPLATES = (
    NliTemplate(
        C + '\n\nBased on the paragraph above, can we conclude that "{h}"?\n\nOPTIONS:\n- Yes\n'
        "- It's impossible to say\n- No",
        {"entailment": "Yes", "neutral": "It's impossible to say", "contradiction": "No"},
    ),
    NliTemplate(
        "Premise: " + C + "\nHypothesis: {h}\nDoes the premise entail the hypothesis? Answer "
        "entailment, neutral or contradiction.",
        {"entailment": "entailment", "neutral": "neutral", "contradiction": "contradiction"},
    ),
    NliTemplate(
        C + '\n\nQuestion: Does this imply that "{h}"? True, False, or Neither?',
        {"entailment": "True", "neutral": "Neither", "contradiction": "False"},
    ),
    NliTemplate(
        "Suppose it's true that " + C + ' Can we infer that "{h}"? Yes, no, or maybe?',
        {"entailment": "Yes", "neutral": "Maybe", "contradiction": "No"},
    ),
)
SENT_COMP_TEMPLATES = (
    C + "\n\nComplete the following sentence from the passage above.\n{b}",
    "Read the text and finish the sentence.\n\n" + C + "\n\n{b}",
    C + "\n\nContinue the sentence: {b}",
)
SUMMARY_TEMPLATES = (
    C + "\n\nWhat is a one-sentence summary of the text above?",
    "Summarize the following document in one sentence.\n\n" + C,
    C + "\n\nTL;DR:",
    "Write a short summary of this text.\n\n" + C,
)
NLI_LABELS = tuple(sorted({label for t in NLI_TEMPLATES for label in t.labels.values()}))
NLI_CLASSES = ("entailment", "neutral", "contradiction")


def fill(template: str, **fields: str) -> str:
    """Replace ``{name}`` fields; unlike ``str.format`` this leaves ``{{context}}`` intact."""
    for name, value in fields.items():
        template = template.replace("{" + name + "}", value)
    return template


def lower_first(text: str) -> str:
    """Lower-case the first character (to embed a question in a sentence)."""
    return text[:1].lower() + text[1:]


def exqa_target(passage: Passage, rng: random.Random) -> tuple[str, str]:
    """Extractive QA: the answer is a span of the passage."""
    question, answer = passage.extractive(rng)
    return fill(rng.choice(EXQA_TEMPLATES), q=question, q_lc=lower_first(question)), answer


def ynqa_target(passage: Passage, rng: random.Random) -> tuple[str, str]:
    """Yes-no QA, balanced between Yes and No."""
    question, answer = passage.yes_no(rng, answer_yes=rng.random() < 0.5)
    return fill(rng.choice(YNQA_TEMPLATES), q=question, q_lc=lower_first(question)), answer


def nli_target(passage: Passage, rng: random.Random) -> tuple[str, str]:
    """NLI with the passage as premise, balanced over the three classes."""
    hypothesis, label = passage.claim(rng, rng.choice(NLI_CLASSES))
    template = rng.choice(NLI_TEMPLATES)
    return fill(template.instruction, h=hypothesis), template.labels[label]


def sent_comp_target(passage: Passage, rng: random.Random) -> tuple[str, str]:
    """Sentence completion: the ending of a sentence of the passage, copied from it."""
    beginning, ending = passage.completion(rng)
    return fill(rng.choice(SENT_COMP_TEMPLATES), b=beginning), ending


def summarization_target(passage: Passage, rng: random.Random) -> tuple[str, str]:
    """Extractive one-sentence summary (the opening sentence)."""
    return rng.choice(SUMMARY_TEMPLATES), passage.summary()


def bonito_target(instruction: str, output: str) -> str:
    """Bonito's output format. The space before the output (``parse_generation`` strips it)
    makes its first token the same as where the passage states it (" $", not "$"), so an
    answer copied from the passage is the same token sequence as in the passage."""
    return f"{instruction}\n{SEPARATOR}\n {output}"


TARGET_BUILDERS: dict[str, Callable[[Passage, random.Random], tuple[str, str]]] = {
    "exqa": exqa_target,
    "ynqa": ynqa_target,
    "nli": nli_target,
    "sent_comp": sent_comp_target,
    "summarization": summarization_target,
}
# Targets packed per prompt. Extractive answers get the most: copying a span out of the
# passage is the hardest thing for a small model to learn, and those targets are short.
# Sentence completion and summaries are cheap extra types that are mostly copying, which
# teaches the attention heads that extractive answers need.
TARGETS_PER_PROMPT = {"exqa": 6, "ynqa": 3, "nli": 3, "sent_comp": 3, "summarization": 1}
# Types whose output is copied from the passage: their outputs also teach the copy head.
COPIED_OUTPUT = frozenset({"exqa", "sent_comp", "summarization"})


@dataclass
class Group:
    """A prompt and several targets for it; each target is trained as if it followed the prompt alone."""

    prompt: str
    targets: list[str]
    copied: bool  # the outputs are spans of the passage


def make_groups(passages: list[Passage], rounds: int, seed: int) -> list[Group]:
    """``rounds`` groups of fresh targets per passage and task type."""
    rng = random.Random(seed)
    return [
        Group(
            build_prompt(passage.text, task_type),
            [bonito_target(*build(passage, rng)) for _ in range(TARGETS_PER_PROMPT[task_type])],
            task_type in COPIED_OUTPUT,
        )
        for _ in range(rounds)
        for passage in passages
        for task_type, build in TARGET_BUILDERS.items()
    ]


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE with one token per digit, Bonito's markers as added tokens, BOS prepended."""
    tokenizer = Tokenizer(models.BPE())
    # Digits are split individually so numbers are copied digit by digit from the passage.
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[UNK, BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.add_tokens([AddedToken(m, special=False, normalized=False) for m in MARKERS])
    bos_id = tokenizer.token_to_id(BOS)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        padding_side="left",  # the model is only used for generation, which needs left padding
        model_max_length=MAX_POSITIONS,
        clean_up_tokenization_spaces=False,  # decode must give back the exact text
    )


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One packed training row: a prompt followed by segments, one per target.

    The prompt's last token is repeated at the head of every segment, so that each segment,
    which sees the prompt but not the other segments, predicts its target from the same state
    as a standalone ``prompt + target`` sequence would.
    """

    input_ids: list[int]
    position_ids: list[int]
    labels: list[int]  # the token to predict at each position, -100 where there is none
    segment: list[int]  # 0 for the prompt, i for the i-th target
    # (position predicting an output token, positions of that token where the passage states it)
    pointers: list[tuple[int, list[int]]]


def copy_sources(prompt: list[int], output: list[int]) -> list[tuple[int, list[int]]]:
    """``(j, positions)`` for each token ``j`` of ``output``: where ``prompt`` has it inside a
    whole occurrence of ``output``. A span at the very start of the passage or after a newline
    has no leading space there, so its first token differs; the rest is then matched."""
    for skip in (0, 1):
        tail, n = output[skip:], len(output) - skip
        starts = [s for s in range(len(prompt) - n + 1) if n and prompt[s : s + n] == tail]
        if starts:
            return [(skip + j, [s + j for s in starts]) for j in range(n)]
    return []


def encode_groups(tokenizer: PreTrainedTokenizerFast, groups: list[Group]) -> list[Row]:
    """Tokenize prompts (with BOS) and targets (plus EOS) as generation will see them, and pack."""
    prompts = tokenizer([g.prompt for g in groups])["input_ids"]
    targets = tokenizer([t for g in groups for t in g.targets], add_special_tokens=False)["input_ids"]
    separator = tokenizer.convert_tokens_to_ids(SEPARATOR)
    rows, cursor = [], 0
    for group, prompt in zip(groups, prompts, strict=True):
        head = len(prompt) - 1
        row = Row(prompt[:head], list(range(head)), [-100] * head, [0] * head, [])
        for number in range(1, len(group.targets) + 1):
            target = targets[cursor] + [tokenizer.eos_token_id]
            cursor += 1
            if group.copied:
                # The output starts after the separator and its newline.
                first = target.index(separator) + 2
                sources = copy_sources(prompt[:head], target[first:-1])
                row.pointers += [(len(row.input_ids) + first + j, keys) for j, keys in sources]
            row.input_ids += [prompt[-1]] + target[:-1]
            row.position_ids += list(range(head, head + len(target)))
            row.labels += target
            row.segment += [number] * len(target)
        rows.append(row)
    return rows


def buckets(rows: list[Row], max_tokens: int, rng: random.Random) -> list[list[int]]:
    """Row indices grouped by similar length into batches of about ``max_tokens``, shuffled."""
    order = sorted(range(len(rows)), key=lambda i: (len(rows[i].input_ids), rng.random()))
    groups: list[list[int]] = []
    current: list[int] = []
    for index in order:
        longest = len(rows[index].input_ids)  # sorted ascending: the newest is the longest
        if current and longest * (len(current) + 1) > max_tokens:
            groups.append(current)
            current = []
        current.append(index)
    if current:
        groups.append(current)
    rng.shuffle(groups)
    return groups


def collate(rows: list[Row], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded tensors with a 4D attention mask that keeps the packed targets apart."""
    width = max(len(row.input_ids) for row in rows)
    ids = torch.full((len(rows), width), pad_id)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100)
    segment = torch.full((len(rows), width), -1)  # -1: padding
    for b, row in enumerate(rows):
        n = len(row.input_ids)
        ids[b, :n] = torch.tensor(row.input_ids)
        positions[b, :n] = torch.tensor(row.position_ids)
        labels[b, :n] = torch.tensor(row.labels)
        segment[b, :n] = torch.tensor(row.segment)
    query, key = segment[:, :, None], segment[:, None, :]
    causal = torch.ones((width, width), dtype=torch.bool).tril()
    # A token sees the prompt and its own segment, causally; padding sees only itself.
    visible = causal & ((key == 0) & (query >= 0) | (key == query))
    pointers = [(b, query, keys) for b, row in enumerate(rows) for query, keys in row.pointers]
    sources = torch.zeros((len(pointers), width), dtype=torch.bool)
    for p, (_, _, keys) in enumerate(pointers):
        sources[p, keys] = True
    return {
        "input_ids": ids,
        "position_ids": positions,
        "attention_mask": visible[:, None],
        "labels": labels,
        "pointer_rows": torch.tensor([b for b, _, _ in pointers], dtype=torch.long),
        "pointer_queries": torch.tensor([q for _, q, _ in pointers], dtype=torch.long),
        "pointer_sources": sources,
    }


def task_batches(
    rows: list[Row], max_tokens: int, pad_id: int, rng: random.Random
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless shuffled passes over the rows, in length-bucketed batches."""
    while True:
        for group in buckets(rows, max_tokens, rng):
            yield collate([rows[i] for i in group], pad_id)


def build_model(tokenizer: PreTrainedTokenizerFast, args: argparse.Namespace) -> LlamaForCausalLM:
    """A small Llama sized by the command-line arguments, with tied embeddings."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.heads,
        max_position_embeddings=MAX_POSITIONS,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


class CopyHeadProbe:
    """Captures the input of the last layer's attention, to supervise its first ``heads`` heads.

    Copying a span out of the passage is what a small model learns slowest from the language
    modelling loss alone: the gradient only reaches the attention pattern through the tokens
    it happens to copy. Training here knows where every copied output token stands in the
    passage, so the heads are also taught to attend there (a pointer loss, as in supervised
    attention for alignment) and what they write to the output is taught to predict that token
    (a copy loss: with the pointer loss alone the head pointed right but the model's prediction
    still leaned on values remembered from training). At inference they are ordinary heads.
    """

    def __init__(self, model: LlamaForCausalLM, heads: int) -> None:
        self.model = model
        self.attention = model.model.layers[-1].self_attn
        self.heads = heads
        self.captured: tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]] | None = None
        self.attention.register_forward_pre_hook(self._capture, with_kwargs=True)

    def _capture(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        self.captured = (hidden, kwargs["position_embeddings"])

    def _project(self, linear: torch.nn.Linear) -> torch.Tensor:
        """The supervised heads' slice of a projection: (batch, heads, positions, head_dim)."""
        hidden = self.captured[0]
        out = torch.nn.functional.linear(hidden, linear.weight[: self.heads * self.attention.head_dim])
        return out.view(*hidden.shape[:2], self.heads, -1).transpose(1, 2)

    def scores(self) -> torch.Tensor:
        """Attention logits of the supervised heads: (batch, heads, queries, keys)."""
        cos, sin = self.captured[1]
        q = self._project(self.attention.q_proj)
        k = self._project(self.attention.k_proj)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        return q @ k.transpose(-1, -2) * self.attention.scaling

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pointer loss (the heads' attention on the sources) plus copy loss (what the heads
        alone write to the output predicts the token), averaged over the pointers."""
        rows, queries = batch["pointer_rows"], batch["pointer_queries"]
        scores = self.scores()[rows, :, queries]  # (pointers, heads, keys)
        visible = batch["attention_mask"][rows, :, queries]  # (pointers, 1, keys)
        log_attention = scores.float().masked_fill(~visible, float("-inf")).log_softmax(-1)
        sources = batch["pointer_sources"][:, None]
        pointer = -log_attention.masked_fill(~sources, float("-inf")).logsumexp(-1).mean()
        values = self._project(self.attention.v_proj)[rows]  # (pointers, heads, keys, head_dim)
        read = torch.einsum("phk,phkd->phd", log_attention.exp().to(values.dtype), values).flatten(1)
        written = torch.nn.functional.linear(read, self.attention.o_proj.weight[:, : read.shape[1]])
        logits = self.model.lm_head(self.model.model.norm(written))
        copy = torch.nn.functional.cross_entropy(logits.float(), batch["labels"][rows, queries])
        return pointer + copy


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to 10% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(
    model: LlamaForCausalLM,
    stream: Iterator[dict[str, torch.Tensor]],
    total_steps: int,
    args: argparse.Namespace,
) -> None:
    """Train on ``total_steps`` batches of ``stream``: linear warm-up, then cosine decay."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.98),
    )
    model.train()
    probe = CopyHeadProbe(model, args.copy_heads)
    seen_tokens, start = 0, time.monotonic()
    running = None
    for step, batch in enumerate(stream, start=1):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step - 1, total_steps, args.lr, args.warmup)
        labels = batch["labels"]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            hidden = model.model(
                input_ids=batch["input_ids"],
                position_ids=batch["position_ids"],
                attention_mask=batch["attention_mask"],
            ).last_hidden_state
            # Labels are already aligned with the positions that predict them (see Row), and
            # only those positions need logits.
            predicting = labels != -100
            logits = model.lm_head(hidden[predicting])
            lm_loss = torch.nn.functional.cross_entropy(logits.float(), labels[predicting])
            supervise = args.copy_weight > 0 and len(batch["pointer_rows"]) > 0
            copy_loss = probe.loss(batch) if supervise else torch.zeros(())
        loss = lm_loss + args.copy_weight * copy_loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seen_tokens += batch["input_ids"].numel()
        losses = torch.stack([lm_loss.detach(), copy_loss.detach()])
        running = losses if running is None else 0.95 * running + 0.05 * losses
        if step % args.log_every == 0 or step == total_steps:
            elapsed = time.monotonic() - start
            print(
                f"step {step}/{total_steps} loss {running[0]:.4f} copy {running[1]:.4f} "
                f"lr {optimizer.param_groups[0]['lr']:.2e} "
                f"{seen_tokens / elapsed:.0f} tok/s elapsed {elapsed:.0f}s",
                flush=True,
            )
        if step == total_steps:
            break


def save(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, output_dir: Path, meta: dict
) -> None:
    """Save model (safetensors), tokenizer, generation defaults and a training record."""
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True,  # Bonito's authors sample with temperature 0.5 and top_p 0.95
        temperature=0.5,
        top_p=0.95,
        max_new_tokens=256,
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    (output_dir / "training_args.json").write_text(json.dumps(meta, indent=2) + "\n")


def check_round_trip(tokenizer: PreTrainedTokenizerFast, groups: list[Group]) -> None:
    """Fail unless decoding gives back the exact text, markers included, with BOS prepended."""
    for prompt, target in [(g.prompt, t) for g in groups[:50] for t in g.targets]:
        if CONTEXT_PLACEHOLDER not in target.split(SEPARATOR)[0]:
            raise RuntimeError(f"no {CONTEXT_PLACEHOLDER} in the task input of {target!r}")
        ids = tokenizer(prompt + target)["input_ids"]
        if ids[0] != tokenizer.bos_token_id:
            raise RuntimeError("the tokenizer does not prepend BOS")
        if tokenizer.decode(ids, skip_special_tokens=True) != prompt + target:
            raise RuntimeError(f"tokenizer round trip changed {prompt + target!r}")
    for marker in MARKERS:
        if len(tokenizer(marker, add_special_tokens=False)["input_ids"]) != 1:
            raise RuntimeError(f"{marker!r} is not a single token")


def check_training_file(passages: list[Passage]) -> None:
    """Fail if demo_train.jsonl is not what the corpus generator produces (regenerate it)."""
    path = EXAMPLES / "demo_train.jsonl"
    on_disk = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    if on_disk != [p.record() for p in passages]:
        raise RuntimeError(f"{path} is stale: run python {EXAMPLES / 'make_demo_corpus.py'}")


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", type=Path, default=Path(DEMO_MODEL))
    parser.add_argument("--steps", type=int, default=1100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=1, help="prompts per passage and type")
    parser.add_argument("--batch-tokens", type=int, default=3072)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--vocab-size", type=int, default=3072)
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--intermediate-size", type=int, default=640)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--copy-weight", type=float, default=0.2, help="weight of the copy-head loss")
    parser.add_argument("--copy-heads", type=int, default=1, help="last-layer heads taught to copy")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                        help="bfloat16 autocast (about 1.5x faster on CPUs with AVX512-BF16)")
    parser.add_argument("--log-every", type=int, default=50)
    args = parser.parse_args()

    start = time.monotonic()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    train_passages, _ = build_corpus(CORPUS_SEED)
    check_training_file(train_passages)
    groups = make_groups(train_passages, args.rounds, args.seed)
    tokenizer = train_tokenizer([g.prompt + t for g in groups for t in g.targets], args.vocab_size)
    check_round_trip(tokenizer, groups)
    rows = encode_groups(tokenizer, groups)
    furthest = max(max(r.position_ids) for r in rows) + 1
    if furthest > MAX_POSITIONS:
        raise RuntimeError(f"a prompt + target needs {furthest} positions > {MAX_POSITIONS}")
    mean = sum(len(r.input_ids) for r in rows) / len(rows)
    print(f"{len(rows)} rows ({sum(map(len, (g.targets for g in groups)))} targets) from "
          f"{len(train_passages)} passages; "
          f"tokens per row: mean {mean:.0f}; longest prompt + target: {furthest} tokens "
          f"(max_position_embeddings {MAX_POSITIONS})")

    model = build_model(tokenizer, args)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"model: {parameters / 1e6:.2f}M parameters, vocabulary {len(tokenizer)}")
    rng = random.Random(args.seed)
    train(model, task_batches(rows, args.batch_tokens, tokenizer.pad_token_id, rng), args.steps, args)
    elapsed = time.monotonic() - start
    save(model, tokenizer, args.output_dir, {
        **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "corpus_seed": CORPUS_SEED,
        "parameters": parameters,
        "training_seconds": round(elapsed),
    })
    print(f"saved to {args.output_dir}; total wall time {elapsed:.0f}s ({elapsed / 60:.1f} min)")


if __name__ == "__main__":
    main()

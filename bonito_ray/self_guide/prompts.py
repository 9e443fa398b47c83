"""The two prompts of SELF-GUIDE and how a generation is read back.

Both are plain text for base and instruction-tuned models alike, in one slot format: a field is
written ``[input] = "..."`` or ``[output] = "..."``, and each prompt ends with an open slot, so
the model's continuation is the field's text up to its closing quote (``read_slot``).

- Input generation: the instruction, the demonstrations' inputs as good
  examples, a few inputs generated in earlier rounds as weaker examples (their quality is not
  known), then the open input slot. For classification the prompt states the label the new input
  should have.
- Output annotation: the instruction, the demonstrations as input/output pairs, the
  new input and the open output slot: an ordinary few-shot prompt.
"""

from __future__ import annotations

import json

from bonito_ray.self_guide.spec import TaskSpec

INPUT, OUTPUT = "[input]", "[output]"


def _quoted(text: str) -> str:
    # JSON quoting: a quote or a line break inside the text cannot close the slot early.
    return json.dumps(text, ensure_ascii=False)


def _slot(name: str, text: str) -> str:
    return f"{name} = {_quoted(text)}"


def input_prompt(spec: TaskSpec, weak: list[str], label: str | None = None) -> str:
    """The prompt asking for one new input; ``weak``: earlier generated inputs; ``label``: the one wanted."""
    lines = ["Write a new input for the task below.", "", "Task instruction:", spec.instruction, "",
             "Good example inputs, written by people:"]
    lines += [_slot(INPUT, d.input) for d in spec.demonstrations]
    if weak:
        lines += ["", "Other example inputs, written before (they may have mistakes):"]
        lines += [_slot(INPUT, text) for text in weak]
    lines += ["", "Write one new input that is different from all the examples above."]
    if label is not None:
        lines.append(f"The expected output for the new input is: {label}")
    return "\n".join(lines) + "\n" + f'{INPUT} = "'


def annotation_prompt(spec: TaskSpec, text: str) -> str:
    """The few-shot prompt asking for the output of input ``text``."""
    lines = [spec.instruction, ""]
    for demo in spec.demonstrations:
        lines += [_slot(INPUT, demo.input), _slot(OUTPUT, demo.output), ""]
    lines.append(_slot(INPUT, text))
    return "\n".join(lines) + "\n" + f'{OUTPUT} = "'


def slot_answer(text: str) -> str:
    """What completes an open slot with ``text``: its quoted text after the opening quote, closing quote
    included (a fine-tuned student's target after :func:`annotation_prompt`; ``read_slot`` reads it back)."""
    return _quoted(text)[1:]


def read_slot(generated: str | None) -> str:
    """The text a model wrote into an open slot: up to the closing quote (JSON escapes read back), else up
    to the next slot or the end; stripped. A generation that writes nothing gives ``""``."""
    if not generated:
        return ""
    try:  # the closing quote of a JSON string: decode it, escapes and all
        text, _ = json.JSONDecoder().raw_decode('"' + generated)
        return text.strip()
    except json.JSONDecodeError:
        pass
    cut = generated
    for marker in (f"\n{INPUT}", f"\n{OUTPUT}", '"\n'):
        cut = cut.split(marker, 1)[0]
    return cut.strip().removesuffix('"').strip()

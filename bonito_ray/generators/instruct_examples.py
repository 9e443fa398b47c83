"""The worked example the instruct generator shows before its request: one short passage, and for every task
type one task about it, written as the model is to answer (tags, ``{{context}}`` where the passage goes).

A small chat model told only what to write answers with talk about the request (SmolLM2-135M-Instruct: a
third of its answers parsed, none passed the validators); shown one answer of the same type, it writes
its own in that form. Each example is what the strict validators (``bonito_ray.validators``) accept of its
type: a span, a listed option, Yes or No, the passage in the input (in the output for ``text_gen``).
"""

from __future__ import annotations

EXAMPLE_PASSAGE = ("The library opens at 9 a.m. on weekdays and at 10 a.m. on Saturdays. It is closed on Sundays. "
                   "Members may borrow up to five books for three weeks.")

# Short task type -> (input, output) of one task about EXAMPLE_PASSAGE.
EXAMPLE_TASKS: dict[str, tuple[str, str]] = {
    "exqa": ("{{context}}\n\nHow many books may a member borrow? Answer with words from the passage.",
             "up to five books"),
    "mcqa": ("{{context}}\n\nWhen does the library open on Saturdays?\nOptions:\n- 9 a.m.\n- 10 a.m.\n- noon",
             "10 a.m."),
    "qg": ("{{context}}\n\nWrite a question that this passage answers.", "How long may members keep a book?"),
    "qa": ("{{context}}\n\nOn which day is the library closed?", "on Sundays"),
    "ynqa": ("{{context}}\n\nIs the library open on Sundays? Yes or No?", "No"),
    "coref": ("{{context}}\n\nIn \"It is closed on Sundays\", what does \"It\" refer to?\nOptions:\n- the library\n"
              "- Saturday\n- a book", "the library"),
    "paraphrase": ("{{context}}\n\nSay this in other words: \"Members may borrow up to five books for three weeks.\"",
                   "A member can take out at most five books and keep them for three weeks."),
    "paraphrase_id": ("{{context}}\n\nSentence 1: It is closed on Sundays.\nSentence 2: On Sundays the library does "
                      "not open.\nDo the two sentences mean the same thing? Yes or No?", "Yes"),
    "sent_comp": ("{{context}}\n\nComplete the sentence: \"Members may borrow up to five books ...\"\nOptions:\n"
                  "- for three weeks.\n- on Sundays.\n- at 9 a.m.", "for three weeks."),
    "sentiment": ("{{context}}\n\nWhat is the sentiment of this text?\nOptions:\n- positive\n- negative\n- neutral",
                  "neutral"),
    "summarization": ("{{context}}\n\nSummarize the text in one sentence.",
                      "The library is open every day but Sunday, and members may borrow five books for three weeks."),
    "text_gen": ("Write a short notice titled \"Library opening hours and loans\".", "{{context}}"),
    "topic_class": ("{{context}}\n\nWhich topic is this text about?\nOptions:\n- sports\n- a library\n- cooking",
                    "a library"),
    "wsd": ("{{context}}\n\nSentence 1: Members may borrow up to five books.\nSentence 2: Can I borrow your pen?\n"
            "Does \"borrow\" mean the same in both sentences? Yes or No?", "Yes"),
    "te": ("{{context}}\n\nDoes the text imply that the library is open on Saturdays? Yes or No?", "Yes"),
    "nli": ("{{context}}\n\nHypothesis: The library opens at 8 a.m. on weekdays.\nDoes the text entail the "
            "hypothesis? Yes, No or Maybe?", "No"),
}

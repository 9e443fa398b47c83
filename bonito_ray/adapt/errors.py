"""User errors of the adaptation commands: reported in one line, without a traceback."""

from __future__ import annotations

from bonito_ray.errors import UserError


class AdaptError(UserError, ValueError):
    """Base class: something the user asked for cannot be done as asked."""


class DatasetError(AdaptError):
    """A generated dataset that is missing, empty or not in the accepted-examples layout."""


class PromptFormatError(AdaptError):
    """A prompt format the tokenizer cannot serve (e.g. chat without a chat template)."""


class EvalSetError(AdaptError):
    """An evaluation set that cannot be read or has an invalid row."""


class FinetuneConfigError(AdaptError):
    """Fine-tuning settings that are inconsistent, or that the cluster cannot serve."""

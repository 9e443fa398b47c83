"""How a job type plugs into the core: what the commit protocol and the dataset card ask of it.

The core never knows which job runs on it. ``bonito_ray.commit`` and ``bonito_ray.card`` ask a
``JobKind`` instead; each job type describes itself in its own package and is named once, in ``kinds``::

    staged_work   staging folders whose files are a run's work beside the example rows every job
                  writes: a different run finding them is refused rather than discarding them
                  (``commit.start_or_resume``), whichever job it is
    made          whether a manifest's ``config`` is this job's
    intro         the card's opening paragraph, from that config
    provenance    the card's "How it was made" rows, from the whole manifest

The card is written from the manifest alone: by the commit, by a later run of any job finishing an
interrupted commit (``commit.roll_forward``), or by ``bonito-ray stats --write-card``. So the job type is
read from the manifest (``kind_of``), never taken from the job running now.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class JobKind:
    """What the core needs to know of one job type (see the module docstring)."""

    name: str
    made: Callable[[dict[str, Any]], bool]
    intro: Callable[[dict[str, Any]], str]
    provenance: Callable[[dict[str, Any]], list[tuple[str, str]]]
    staged_work: tuple[str, ...] = ()


def kinds() -> tuple[JobKind, ...]:
    """Every job type, the one place naming them; a manifest is the first one's that ``made`` it."""
    # Imported here, not at the top: each job type's module imports the core (this module, the card).
    from bonito_ray import generate_kind
    from bonito_ray.self_guide import kind as self_guide_kind

    return self_guide_kind.KIND, generate_kind.KIND  # generate last: it takes any config (older manifests too)


def kind_of(config: dict[str, Any]) -> JobKind:
    """The job type that made a manifest's ``config``."""
    return next(kind for kind in kinds() if kind.made(config))


def staged_work() -> tuple[str, ...]:
    """The staging folders any job type keeps as a run's work (``JobKind.staged_work``), each once."""
    return tuple(dict.fromkeys(folder for kind in kinds() for folder in kind.staged_work))

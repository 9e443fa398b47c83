"""The reference Bonito package (PyPI ``bonito-llm``, module ``bonito``) run on passages, for
tests/test_python_api.py.

It runs in a process of its own: the reference's ``Bonito`` is a ``vllm.LLM``, and vLLM in-process
binds the CPU threads of its process and seeds its global random state, which the test session
must not inherit. One ``generate_tasks`` call per task type over all the passages, as a user makes
it; the reference returns the tasks that parse, in passage order, without saying which passage
each comes from.
vLLM costs seconds to import, so this process also runs the test's checks of bonito-ray that need
vLLM's own classes: ``vllm.SamplingParams`` read by ``bonito_ray.sampling``, and the reference's
``LLM`` keywords given to ``bonito_ray.Bonito(..., engine="vllm")``.

    python tests/reference_bonito.py REQUEST.json RESULT.json

REQUEST: {"model", "passages": [...], "task_types": [...], "sampling": {max_tokens, temperature, top_p},
"read_sampling": [SamplingParams keyword arguments, ...], "vllm_options": [Bonito keyword arguments, ...]};
RESULT: {"tasks": {task_type: [{"input", "output"}, ...]},
"read_sampling": [what bonito_ray.sampling reads from each, or its error message],
"vllm_options": [the engine_kwargs bonito_ray.Bonito(model, engine="vllm", **each) keeps, or its error message]}.
"""

from __future__ import annotations

import json
import os
import sys

# vLLM's CPU build needs its KV cache size (GiB); the engine runs in this process (no engine process to start).
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
# One unbound thread: the demo model is tiny, and this runs beside the test's Ray job on a small shared
# machine, where OpenMP threads pinned to every core spin on their barriers against the other processes.
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")


def main(request_path: str, result_path: str) -> None:
    from bonito import Bonito
    from datasets import Dataset
    from vllm import SamplingParams

    from bonito_ray import Bonito as BonitoRay
    from bonito_ray.config import ConfigError
    from bonito_ray.sampling import sampling_settings

    request = json.loads(open(request_path, encoding="utf-8").read())
    # float32: the CPU build would pick bfloat16, and bonito-ray's hf engine computes in float32.
    # Eager mode skips a graph capture that costs more than this whole run.
    bonito = Bonito(request["model"], dtype="float32", enforce_eager=True, max_model_len=512)
    params = SamplingParams(**request["sampling"])
    result = {"tasks": {}, "read_sampling": [], "vllm_options": []}
    for arguments in request["read_sampling"]:
        try:
            result["read_sampling"].append(sampling_settings(SamplingParams(**arguments)))
        except ConfigError as err:
            result["read_sampling"].append(str(err))
    for arguments in request["vllm_options"]:
        try:
            result["vllm_options"].append(BonitoRay(request["model"], **arguments).settings["engine_kwargs"])
        except ConfigError as err:
            result["vllm_options"].append(str(err))
    for task_type in request["task_types"]:
        result["tasks"][task_type] = bonito.generate_tasks(
            Dataset.from_dict({"text": request["passages"]}), context_col="text", task_type=task_type,
            sampling_params=params).to_list()
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:3])

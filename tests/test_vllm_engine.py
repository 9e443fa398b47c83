"""The vllm engine: the ray.data.llm processor that gets built, and (on a GPU with vLLM) a real run."""

import importlib.util

import pytest

from bonito_ray.config import GenerateConfig
from bonito_ray.engines.vllm import DEFAULT_ENGINE_KWARGS, _to_contract, _to_vllm_request, build_vllm_processor
from bonito_ray.stages import REQUEST_SCHEMA


def config(**overrides):
    values = dict(input="in", output="out", engine="vllm", model="BatsResearch/bonito-v1", num_replicas=3,
                  batch_size=32, max_concurrent_batches=6, accelerator_type="H100",
                  engine_kwargs={"max_model_len": 2048, "tensor_parallel_size": 2, "quantization": "awq"})
    return GenerateConfig(**(values | overrides))


def test_processor_stages_and_config_passthrough(ray_cluster):
    processor = build_vllm_processor(config())
    # Bonito is a base model with plain-text markers: no chat template stage.
    assert processor.list_stage_names() == ["TokenizeStage", "vLLMEngineStage", "DetokenizeStage"]
    engine = processor.get_stage_by_name("vLLMEngineStage")
    kwargs = engine.fn_constructor_kwargs
    assert kwargs["model"] == "BatsResearch/bonito-v1"
    assert kwargs["batch_size"] == 32 and kwargs["max_concurrent_batches"] == 6
    assert kwargs["should_continue_on_error"] is True
    assert kwargs["engine_kwargs"]["max_model_len"] == 2048
    assert kwargs["engine_kwargs"]["tensor_parallel_size"] == 2
    assert kwargs["engine_kwargs"]["quantization"] == "awq"
    assert kwargs["engine_kwargs"]["enable_prefix_caching"] is DEFAULT_ENGINE_KWARGS["enable_prefix_caching"]
    compute = engine.map_batches_kwargs["compute"]
    assert (compute.min_size, compute.max_size) == (3, 3)
    assert engine.map_batches_kwargs["accelerator_type"] == "H100"
    assert engine.map_batches_kwargs["runtime_env"]["env_vars"]["VLLM_NO_USAGE_STATS"] == "1"


def test_request_and_contract_mapping():
    row = {"prompt": "P", "sampling_params": {"max_tokens": 5, "temperature": 0.5, "top_p": 0.95, "seed": None}}
    assert _to_vllm_request(row) == {"prompt": "P", "sampling_params": {"max_tokens": 5, "temperature": 0.5,
                                                                        "top_p": 0.95}}
    carried = {name: f"v-{name}" for name in REQUEST_SCHEMA.names}
    ok = _to_contract(carried | {"generated_text": "g", "num_input_tokens": 3, "num_generated_tokens": 2,
                                 "__inference_error__": "", "prompt_token_ids": [1, 2, 3]}, REQUEST_SCHEMA.names)
    assert ok["engine_error"] is None and ok["generated_text"] == "g" and "prompt_token_ids" not in ok
    failed = _to_contract(carried | {"generated_text": "", "num_input_tokens": 0, "num_generated_tokens": 0,
                                     "__inference_error__": "ValueError: prompt too long"}, REQUEST_SCHEMA.names)
    assert failed["engine_error"] == "ValueError: prompt too long" and failed["id"] == "v-id"


def _gpu_and_vllm() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install 'bonito-ray[vllm]')"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine"
    return None


@pytest.mark.skipif(_gpu_and_vllm() is not None, reason=_gpu_and_vllm() or "")
def test_vllm_engine_generates_on_gpu(ray_cluster, random_model, tmp_path):
    from bonito_ray.pipeline import generate
    from tests.corpus_files import write_jsonl
    from tests.tiny_models import sample_passages

    corpus = write_jsonl(tmp_path / "c.jsonl", sample_passages(4))
    summary = generate(config(input=str(corpus), output=str(tmp_path / "out"), model=random_model, num_replicas=1,
                              accelerator_type=None, max_tokens=8,
                              engine_kwargs={"max_model_len": 512, "gpu_memory_utilization": 0.3}))
    assert summary.prompts == 12 and summary.generated_tokens > 0

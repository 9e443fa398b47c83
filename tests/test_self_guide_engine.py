"""The vllm engine a SELF-GUIDE job keeps for all its passes (bonito_ray.engines.vllm_pool), without an engine start:
its replicas ask for what ray.data.llm's processor would (tests/test_vllm_engine.py runs a real job on it)."""

from bonito_ray.config import DEMO_MODEL, GenerateConfig
from bonito_ray.engines import keeps_replicas
from bonito_ray.engines.vllm import ENGINE_STAGE, build_vllm_processor
from bonito_ray.engines.vllm_pool import CONTROL_CALLS, REPLICA_RESTARTS, replica_options


def engine_batches(device: str, **overrides) -> dict:
    values = dict(input="in", output="out", engine="vllm", model=DEMO_MODEL, num_replicas=2, batch_size=8,
                  max_concurrent_batches=3, accelerator_type=None, engine_kwargs={"max_model_len": 256})
    processor = build_vllm_processor(GenerateConfig(**(values | overrides)), device=device)
    return processor.get_stage_by_name(ENGINE_STAGE).get_dataset_map_batches_kwargs(8, processor.DATA_COLUMN)


def test_kept_replicas_ask_for_the_processors_resources(ray_cluster):
    assert keeps_replicas("vllm") and not keeps_replicas("hf")
    on_cpus = replica_options(engine_batches("cpu", cpus_per_replica=1.5))
    assert on_cpus["num_cpus"] == 1.5 and "num_gpus" not in on_cpus
    assert on_cpus["runtime_env"]["env_vars"]["VLLM_NO_USAGE_STATS"] == "1"  # the processor's environment
    assert on_cpus["max_concurrency"] == 3 + CONTROL_CALLS and on_cpus["max_restarts"] == REPLICA_RESTARTS

    placed = replica_options(engine_batches("gpu", accelerator_type="H100", placement_group_config={
        "bundles": [{"GPU": 1, "CPU": 4}], "strategy": "STRICT_PACK"}))
    assert (placed["num_gpus"], placed["num_cpus"], placed["accelerator_type"]) == (1, 4, "H100")

    # Tensor parallel on Ray: no GPU for the replica itself; its placement group (made per replica by the stage's
    # ray_remote_args_fn) holds one per worker.
    parallel = engine_batches("gpu", engine_kwargs={"max_model_len": 256, "tensor_parallel_size": 2})
    assert "ray_remote_args_fn" in parallel and not replica_options(parallel).get("num_gpus")

"""The LoRA training loop that Ray Train runs on every worker.

A plain torch loop over a peft model (DDP across workers when there is more than one): the
loss is the summed cross-entropy of target tokens divided by the target tokens of the whole
global batch, so gradient accumulation and data parallelism give exactly the gradient of one
big batch. Rank 0 writes a Ray Train checkpoint (adapter, optimizer, schedule, loss history)
every ``checkpoint_every`` steps; a restarted run continues from the last one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any

from bonito_ray.adapt.batches import Encoded, StepPlan, collate, summed_token_loss

logger = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"
ADAPTER_METADATA_FILE = "bonito_ray_adapter.json"  # base model, prompt format, SELF-GUIDE spec: read by `evaluate`
_OPTIMIZER_FILE = "optimizer.pt"
_STATE_FILE = "state.json"


@dataclass
class TrainingData:
    """What every worker trains on: shipped once through the object store."""

    train: Encoded
    validation: Encoded
    plan: StepPlan


def train_loop_per_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """Ray Train entry point; ``cfg`` carries the run settings and a reference to the :class:`TrainingData`.

    Returns the final state (step, loss histories) and the step the run resumed from; Ray Train
    hands rank 0's return value to the driver.
    """
    import ray
    import ray.train
    import ray.train.torch
    import torch

    from bonito_ray.adapt.train_progress import tell_step

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    if device.type == "cpu":
        torch.set_num_threads(max(1, int(cfg["cpus_per_worker"])))
    data: TrainingData = ray.get(cfg["data"])
    plan = data.plan
    model, tokenizer, optimizer, scheduler = _build(cfg, device, plan.total_steps)

    state = {"step": 0, "train_loss": [], "validation_loss": []}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as directory:
            state = _restore(directory, model, optimizer, scheduler)
        logger.info("resuming from the checkpoint of step %d", state["step"])
    resumed_from = state["step"]
    wrapped = ray.train.torch.prepare_model(model, move_to_device=False)  # DDP when world > 1
    trainable = [p for p in model.parameters() if p.requires_grad]

    for step in range(state["step"], plan.total_steps):
        model.train()
        global_tokens = data.train.target_tokens(plan.global_batch(step))
        loss = _accumulate_gradients(wrapped, data.train, plan.worker_batch(step, rank, world),
                                     cfg["per_device_batch_size"], world, global_tokens, tokenizer.pad_token_id,
                                     device)
        torch.nn.utils.clip_grad_norm_(trainable, cfg["max_grad_norm"])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] = step + 1
        state["train_loss"].append([step + 1, _all_sum(loss, world) / global_tokens])
        if rank == 0:  # the driver's progress line (adapt.train_progress)
            tell_step(cfg.get("progress"), step + 1, state["train_loss"][-1][1],
                      sum(len(data.train.ids[i]) for i in plan.global_batch(step)))
        if state["step"] % cfg["checkpoint_every"] == 0 or state["step"] == plan.total_steps:
            validation = _validation_loss(model, data.validation, cfg["per_device_batch_size"],
                                          tokenizer.pad_token_id, rank, world, device)
            if validation is not None:
                state["validation_loss"].append([state["step"], validation])
            _report_checkpoint(model, optimizer, scheduler, state, resumed_from, rank)
    if rank == 0:
        _write_outputs(cfg, model, tokenizer, device, state)
    return {**state, "resumed_from_step": resumed_from}


def _build(cfg: dict[str, Any], device: Any, total_steps: int) -> tuple[Any, Any, Any, Any]:
    """The peft model (LoRA on the possibly 4-bit base), its tokenizer, optimizer and linear schedule."""
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import get_linear_schedule_with_warmup

    from bonito_ray.adapt.models import load_causal_lm, lora_config
    from bonito_ray.hf_models import padded_tokenizer

    tokenizer = padded_tokenizer(cfg["model"])
    base = load_causal_lm(cfg["model"], device, quantize_4bit=cfg["qlora"])
    if cfg["qlora"]:
        base = prepare_model_for_kbit_training(base, gradient_checkpointing_kwargs={"use_reentrant": False})
    torch.manual_seed(cfg["seed"])  # the same LoRA initialisation on every worker
    model = get_peft_model(base, lora_config(cfg["lora_rank"], cfg["lora_alpha"], cfg["lora_dropout"]))
    optimizer = _optimizer([p for p in model.parameters() if p.requires_grad], cfg["learning_rate"],
                           paged=cfg["qlora"])
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=total_steps)
    return model, tokenizer, optimizer, scheduler


def _accumulate_gradients(wrapped: Any, train: Encoded, indices: Any, per_device: int, world: int,
                          global_tokens: int, pad_id: int, device: Any) -> Any:
    """Backward passes over this worker's share of one global batch; returns its summed token loss."""
    import torch

    total = torch.zeros((), device=device)
    micro_batches = [indices[i:i + per_device] for i in range(0, len(indices), per_device)]
    for number, part in enumerate(micro_batches, 1):
        # Gradients are all-reduced once per step (with the last micro-batch), not once per micro-batch.
        syncing = number == len(micro_batches) or world == 1
        with contextlib.nullcontext() if syncing else wrapped.no_sync():
            loss = summed_token_loss(wrapped, _to(collate(train, part, pad_id), device))
            # DDP averages gradients over workers, hence the factor `world`.
            (loss * world / global_tokens).backward()
        total += loss.detach()
    return total


def _optimizer(params: list[Any], learning_rate: float, paged: bool) -> Any:
    """AdamW without weight decay; bitsandbytes' paged AdamW for Q-LoRA, as the paper trains."""
    import torch

    if paged:
        import bitsandbytes

        return bitsandbytes.optim.PagedAdamW(params, lr=learning_rate, weight_decay=0.0)
    return torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)


def _to(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    return {name: tensor.to(device) for name, tensor in batch.items()}


def _all_sum(value: Any, world: int) -> float:
    """``value`` (a scalar tensor) summed over all workers."""
    import torch.distributed as dist

    value = value.detach().clone()
    if world > 1:
        dist.all_reduce(value)
    return float(value.item())


def _validation_loss(model: Any, validation: Encoded, per_device: int, pad_id: int, rank: int, world: int,
                     device: Any) -> float | None:
    """Mean target-token loss over the validation examples (each worker scores a strided share)."""
    import torch

    if not len(validation):
        return None
    model.eval()
    total = torch.zeros((), device=device)
    mine = list(range(rank, len(validation), world))
    with torch.no_grad():
        for start in range(0, len(mine), per_device):
            total += summed_token_loss(model, _to(collate(validation, mine[start:start + per_device], pad_id),
                                                  device))
    return _all_sum(total, world) / validation.target_tokens(range(len(validation)))


def _metrics(state: dict[str, Any], resumed_from: int) -> dict[str, Any]:
    """What each report carries (the full loss histories are in the checkpoint and the return value)."""
    return {
        "step": state["step"],
        "train_loss": state["train_loss"][-1][1],
        "validation_loss": state["validation_loss"][-1][1] if state["validation_loss"] else None,
        "resumed_from_step": resumed_from,
    }


def _report_checkpoint(model: Any, optimizer: Any, scheduler: Any, state: dict[str, Any], resumed_from: int,
                       rank: int) -> None:
    """Report metrics from every worker; rank 0 also hands Ray Train a checkpoint to persist."""
    import ray.train
    import torch

    metrics = _metrics(state, resumed_from)
    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as directory:
        model.save_pretrained(os.path.join(directory, ADAPTER_DIR))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                   os.path.join(directory, _OPTIMIZER_FILE))
        with open(os.path.join(directory, _STATE_FILE), "w") as f:
            json.dump(state, f)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory),
                         checkpoint_dir_name=f"checkpoint_{state['step']:06d}")


def _restore(directory: str, model: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Load a checkpoint written by :func:`_report_checkpoint` into the model and optimizer; returns its state."""
    import torch
    from peft import load_peft_weights, set_peft_model_state_dict

    device = next(p.device for p in model.parameters() if p.requires_grad)
    set_peft_model_state_dict(model, load_peft_weights(os.path.join(directory, ADAPTER_DIR), device=str(device)))
    saved = torch.load(os.path.join(directory, _OPTIMIZER_FILE), map_location=device, weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    with open(os.path.join(directory, _STATE_FILE)) as f:
        return json.load(f)


def _write_outputs(cfg: dict[str, Any], model: Any, tokenizer: Any, device: Any, state: dict[str, Any]) -> None:
    """Rank 0: the adapter (with tokenizer and metadata) and, with ``merge``, the merged model, to the output."""
    from bonito_ray.adapt.fsio import upload_dir
    from bonito_ray.adapt.models import load_causal_lm
    from bonito_ray.storage import join

    metadata = {"base_model": cfg["model"], "prompt_format": cfg["prompt_format"], "task_spec": cfg["task_spec"],
                "dataset": cfg["dataset"], "steps": state["step"]}
    with tempfile.TemporaryDirectory() as adapter_dir:
        model.save_pretrained(adapter_dir)
        tokenizer.save_pretrained(adapter_dir)
        with open(os.path.join(adapter_dir, ADAPTER_METADATA_FILE), "w") as f:
            json.dump(metadata, f, indent=2)
        upload_dir(adapter_dir, join(cfg["output"], ADAPTER_DIR))
        if cfg["merge"]:
            from peft import PeftModel

            # Merge into full-precision base weights (never into 4-bit ones, which would round the update away).
            base = load_causal_lm(cfg["model"], device)
            merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
            with tempfile.TemporaryDirectory() as merged_dir:
                merged.save_pretrained(merged_dir)
                tokenizer.save_pretrained(merged_dir)
                upload_dir(merged_dir, join(cfg["output"], MERGED_DIR))

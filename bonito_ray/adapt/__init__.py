"""Adapting target models to a generated dataset and measuring the gain (the paper's section 4 setup).

Modules, one job each:

- ``data``: read the accepted examples of a generated dataset; deterministic train/validation split.
- ``prompts``: the prompt a target model sees (plain Bonito markers or the model's chat template).
- ``export``: write the dataset in the formats other trainers read (Alpaca, OpenAI messages, prompt/completion).
- ``models``: load tokenizers, base models (optionally 4-bit) and LoRA configurations.
- ``batches``: tokenised examples, the deterministic batch order, the target-only loss.
- ``train_loop``: the per-worker LoRA training loop run by Ray Train (checkpoints, resume, outputs).
- ``finetune``: the driver that validates a fine-tuning run and launches it on Ray Train.
- ``evalsets``, ``scoring``, ``metrics``, ``evaluate``: the paper's evaluation protocol on Ray Data.
- ``cli``: the ``finetune``, ``evaluate`` and ``export`` subcommands.
- ``errors``, ``fsio``: user-error types; small file operations on local paths and URIs.
"""

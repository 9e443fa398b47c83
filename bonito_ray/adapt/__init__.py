"""Adapting target models to a generated dataset and measuring the gain (the Bonito paper's section 4 setup;
SELF-GUIDE's prompting vs fine-tuned comparison).

Modules, one job each:

- ``data``: read the accepted examples of a generated dataset; deterministic train/validation split.
- ``prompts``: the prompt a target model sees (plain Bonito markers or the model's chat template; a SELF-GUIDE
  task's few-shot prompt) and how its answer is read.
- ``export``: write the dataset in the formats other trainers read (Alpaca, OpenAI messages, prompt/completion).
- ``models``: load tokenizers, base models (optionally 4-bit) and LoRA configurations.
- ``batches``: tokenised examples, the deterministic batch order, the target-only loss.
- ``train_loop``: the per-worker LoRA training loop run by Ray Train (checkpoints, resume, outputs).
- ``finetune``: the driver that validates a fine-tuning run and launches it on Ray Train.
- ``evalsets``, ``scoring``, ``metrics``, ``protocols``, ``evaluate``: evaluation on Ray Data, by the Bonito
  paper's protocol or SELF-GUIDE's.
- ``cli``: the ``finetune``, ``evaluate`` and ``export`` subcommands.
- ``errors``, ``fsio``: user-error types; small file operations on local paths and URIs.
"""

"""SELF-GUIDE (Zhao et al., COLM 2024, arXiv:2407.12874): a model synthesises training data for one task.

Given a task's instruction and a few demonstrations (``spec``), the student model itself writes new
inputs in rounds (``prompts``, ``rounds``), the inputs are filtered (``filters``), the model
annotates each kept input several times and a self-consistency vote keeps one answer
(``annotate``, ``vote``); the result is a dataset in bonito-ray's layout (task folder
``self_guide``) that ``export``, ``finetune`` and ``evaluate`` read as they read Bonito's.
``pipeline`` runs the whole job on Ray Data with bonito-ray's engines; ``config`` holds its settings.
"""

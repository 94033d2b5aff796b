"""Planning: CEM through the predictor, model-predictive control, precision and the paper's
evaluation.

Declared here, without imports, for the command line: `SPLITS`, the episodes of a dataset
the evaluation draws its tasks from (`evaluate.tasks_from_dataset`, `lewm eval --split`)."""

from __future__ import annotations

# Which episodes of a dataset `tasks_from_dataset` draws start states from (`lewm eval --split`).
SPLITS: dict[str, str] = {
    "val": "the model's held-out episodes (default: a score on episodes it did not train on)",
    "train": "the model's training episodes",
    "all": "every episode of the file, as the paper's evaluation draws from its training file",
}

"""Planning: CEM through the predictor, model-predictive control, precision and the paper's
evaluation.

Declared here, without imports, for the command line: `SPLITS`, the episodes of a dataset
the evaluation draws its tasks from (`evaluate.tasks_from_dataset`, `lewm eval --split`), and
`GOAL_AT_START`, whether a goal that holds at a task's start counts as reached
(`mpc.run_mpc`'s and `evaluate.evaluate`'s `count_start`, `lewm eval --goal-at-start`)."""

from __future__ import annotations

# Which episodes of a dataset `tasks_from_dataset` draws start states from (`lewm eval --split`).
SPLITS: dict[str, str] = {
    "val": "the model's held-out episodes (default: a score on episodes it did not train on)",
    "train": "the model's training episodes",
    "all": "every episode of the file, as the paper's evaluation draws from its training file",
}

# Whether a task whose goal already holds at its start is reached there (`lewm eval
# --goal-at-start`; `count_start` True for "counted", False for "not-counted").
GOAL_AT_START: dict[str, str] = {
    "counted": "reached at once, no step run (default: every figure so far)",
    "not-counted": "reached only if it holds again after a step, as the paper's evaluation "
    "checks only the states after steps",
}

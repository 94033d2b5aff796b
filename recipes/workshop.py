"""The workshop's expected figures, measured with the commands `docs/workshop.md` gives.

    python recipes/workshop.py [--out docs/workshop_figures.json] [--work runs/workshop]

runs, in order and on this machine, what a participant does from the lab's pages (the same
`lewm` commands the pages start):
1. collect the Two-Room dataset (the shipped model's recipe: 1,000 episodes x 100 steps, seed 1);
2. train a planner on it for a fixed number of steps (lambda 0.09, the lab preset, 2 threads),
   timing the run;
3. plan with it to 30 unseen goals (fresh policy episodes, seed 1) with the workshop's CEM
   settings (300 samples x 10 iterations, block sampling, min objective, replanning every 2
   blocks);
4. the collapse demo: the same training with lambda 0 for fewer steps, next to the planner run's
   validation row at that step.

It writes one JSON object: every figure with its value and the command that produced it. The
guide and the handout quote these figures behind `<!--fig:workshop.NAME-->` tags, and
`tests/test_workshop.py` checks each quoted number against this file (and regenerates it at
full size under `-m slow`). The shipped model's figures (decoder PSNR, probes, surprise) are
quoted from the JSON files beside its weights in the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lewm_core.atomic import write_json
from lewm_core.world_model.cpu_kernels import cpu_description


@dataclass
class WorkshopSettings:
    """What the guide asks participants to run (each field a figure's input)."""

    episodes: int = 1000  # Data page: episodes of the Two-Room dataset (shipped model's recipe)
    steps: int = 100  # Data page: raw steps per episode
    data_seed: int = 1  # Data page: seed
    train_steps: int = 600  # Train page: max steps of the participant's planner
    collapse_steps: int = 300  # Train page: max steps of the lambda-0 run
    threads: int = 2  # Train page, Advanced: CPU threads of one run
    checkpoint_every: int = 100  # Train page, Advanced: validation rows every this many steps
    plan_episodes: int = 30  # Plan page / lewm eval: unseen tasks
    plan_seed: int = 1  # seed of the unseen tasks
    samples: int = 300  # CEM candidates per iteration (the Plan page's "Fast")
    iterations: int = 10  # CEM iterations


def _lewm(args: list[str]) -> tuple[dict, float, str]:
    """Run `lewm ARGS --json`; return its last JSON line, the wall time and the command."""
    cmd = [sys.executable, "-m", "lewm_core", *args, "--quiet", "--json"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - t0
    shown = "lewm " + shlex.join([*args, "--json"])
    return json.loads(out.strip().splitlines()[-1]), wall, shown


def _val_row(run: Path, step: int) -> dict:
    """The validation row (the collapse monitors) of `run`'s metrics at `step`."""
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("step") == step and "emb_std_mean" in row:
            return row
    raise SystemExit(f"error: {run} has no validation row at step {step}")


def measure(s: WorkshopSettings, work: Path) -> dict:
    """Every workshop figure: {name: {"value": number, "command": str}}."""
    work.mkdir(parents=True, exist_ok=True)
    data, planner, collapse = work / "tworoom.h5", work / "planner", work / "lam0"
    figs: dict[str, dict] = {}

    def put(name: str, value: float, command: str) -> None:
        figs[name] = {"value": value, "command": command}

    _, wall, cmd = _lewm(
        ["collect", "--env", "tworoom", "--episodes", str(s.episodes), "--steps", str(s.steps)]
        + ["--seed", str(s.data_seed), "--out", str(data), "--overwrite"]
    )
    put("collect_s", wall, cmd)

    train = ["train", "--data", str(data), "--preset", "lab", "--threads", str(s.threads)]
    train += ["--checkpoint-every", str(s.checkpoint_every)]
    summary, wall, cmd = _lewm(
        [*train, "--out", str(planner), "--max-steps", str(s.train_steps), "--sigreg-weight"]
        + ["0.09"]
    )
    if summary["steps"] != s.train_steps:  # the epochs ran out first: the guide would be wrong
        raise SystemExit(f"error: the planner stopped at {summary['steps']} steps")
    put("train_steps", summary["steps"], cmd)
    put("train_min", wall / 60, cmd)
    put("steps_per_s", s.train_steps / wall, cmd)

    ev, wall, cmd = _lewm(
        ["eval", "--checkpoint", str(planner), "--episodes", str(s.plan_episodes)]
        + ["--seed", str(s.plan_seed), "--samples", str(s.samples), "--iterations"]
        + [str(s.iterations), "--sampling", "block", "--objective", "min"]
        + ["--receding-horizon", "2"]
    )
    put("plan_success_pct", 100 * ev["success_rate"], cmd)
    put("plan_ci_lo_pct", 100 * ev["success_ci95"][0], cmd)
    put("plan_ci_hi_pct", 100 * ev["success_ci95"][1], cmd)
    put("random_success_pct", 100 * ev["random_success_rate"], cmd)
    put("plan_s", ev["plan_ms_median"] / 1000, cmd)
    put("eval_min", wall / 60, cmd)

    _, wall, cmd = _lewm(
        [*train, "--out", str(collapse), "--max-steps", str(s.collapse_steps), "--sigreg-weight"]
        + ["0"]
    )
    put("collapse_min", wall / 60, cmd)
    for name, run in (("lam0", collapse), ("lam009", planner)):
        row = _val_row(run, s.collapse_steps)
        for key in ("emb_std_mean", "effective_rank", "pred_over_copy"):
            put(f"{name}_{key}", row[key], f"the validation row at step {s.collapse_steps}")
    return figs


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="docs/workshop_figures.json", help="the figures' JSON file")
    p.add_argument("--work", default="runs/workshop", help="folder for the dataset and runs")
    for name, value in asdict(WorkshopSettings()).items():
        p.add_argument("--" + name.replace("_", "-"), type=int, default=value)
    args = p.parse_args(argv)
    settings = WorkshopSettings(**{k: getattr(args, k) for k in asdict(WorkshopSettings())})
    os.environ.setdefault("MUJOCO_GL", "egl")
    figs = measure(settings, Path(args.work))
    doc = {
        "settings": asdict(settings),
        "machine": cpu_description(),
        "cpu_count": os.cpu_count(),
        "figures": figs,
    }
    write_json(Path(args.out), doc)
    print(json.dumps({k: round(v["value"], 4) for k, v in figs.items()}, indent=2))


if __name__ == "__main__":
    main()

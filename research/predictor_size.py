"""Does the paper's predictor plan Push-T better than the lab's? Two arms, same everything else.

    python research/predictor_size.py [--steps 2000] [--seeds 1 2] [--table-only] [--json]

Both arms train the `lab` preset (CNN encoder at 64 px, seed 0, batch 64) for a full schedule of
`--steps` steps on data/pusht-v1.h5 (1,000 expert episodes; `bash recipes/pusht_v1.sh` collects
it); they differ in the predictor alone:

    arm          predictor                                   parameters (predictor)
    lab          4 blocks, 4 heads x 48, MLP 768             the lab preset's
    paper-pred   6 blocks, 16 heads x 64, MLP 2048           the paper's (`--arch` overrides)

The paper's ablation on Push-T gives 80.7 / 96.0 / 86.7 % for its tiny / small / base predictor.
Each arm is probed (`lewm probe`: linear r of agent, block and angle) and plans the tasks of the
selection seeds (never the reported seed 0) with the published planner on the paper's protocol
(50 tasks per seed, float32, compiled). The two arms face the same tasks, so the table also gives
the paired comparison (tasks met by one arm only, exact sign test; `paired_eval.py`).
Runs go to runs/p-<arm>-<steps>; a step whose output exists is skipped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from angle_factors import ROOT, lewm, read_probe, written
from paired_eval import load_summary, paired

DATA = ROOT / "data" / "pusht-v1.h5"
ARMS: dict[str, tuple[str, ...]] = {
    "lab": (),
    "paper-pred": ("pred_depth=6", "pred_heads=16", "pred_head_dim=64", "pred_mlp=2048"),
}
# the paper's protocol (REPRODUCTION.md, Push-T) and its planner
PLANNER = (
    "--split", "all", "--goal-at-start", "not-counted", "--sampling", "independent",
    "--context", "1", "--objective", "last", "--receding-horizon", "5",
)  # fmt: skip


def run_dir(arm: str, steps: int, runs: Path) -> Path:
    return runs / f"p-{arm}-{steps}"


def train_probe_plan(arm: str, steps: int, seeds: list[int], runs: Path) -> None:
    run = run_dir(arm, steps, runs)
    arch = [a for setting in ARMS[arm] for a in ("--arch", setting)]
    if not (run / "train_summary.json").exists():
        lewm(
            "train", "--data", str(DATA), "--preset", "lab", *arch, "--out", str(run),
            "--max-steps", str(steps), "--checkpoint-every", "500", "--quiet", "--json",
        )  # fmt: skip
    info = run / "model_info.json"
    if not written(info):
        lewm("model-info", "--preset", "lab", *arch, "--json", out=info)
    probe = run / "probe.out"
    if not written(probe):
        lewm("probe", "--checkpoint", str(run), "--quiet", "--json", out=probe)
    for seed in seeds:
        out = run / f"eval-seed{seed}.json"
        if not written(out):
            lewm(
                "eval", "--checkpoint", str(run), "--data", str(DATA), *PLANNER,
                "--episodes", "50", "--seed", str(seed), "--compile", "--quiet", "--json", out=out,
            )  # fmt: skip


def summary_of(run: Path, seeds: list[int]) -> dict:
    """One arm's figures: parameters, training, probes and planning per seed."""
    train = json.loads((run / "train_summary.json").read_text())
    row: dict = {
        "train_s": train["wall_s"],
        "pred_over_copy": train["val_pred_loss"] / train["val_copy_loss"],
    }
    info = run / "model_info.json"
    if written(info):
        counts = json.loads(info.read_text().strip().splitlines()[-1])
        row["params_predictor"] = counts["params_predictor"]
    if written(run / "probe.out"):
        probe = read_probe(run / "probe.out")
        row["probe"] = {q: probe[q][0] for q in ("agent_pos", "block_pos", "block_angle")}
    for seed in seeds:
        f = run / f"eval-seed{seed}.json"
        if written(f):
            s = load_summary(str(f))
            push = s["goal_kinds"].get("push", {})
            row[f"seed{seed}"] = {
                "met": round(s["success_rate"] * s["episodes"]),
                "episodes": s["episodes"],
                "push": f"{push.get('successes', 0)} of {push.get('episodes', 0)}",
                "plan_ms_median": round(s["plan_ms_median"]),
            }
    return row


def table(rows: dict[str, dict], seeds: list[int]) -> str:
    head = "| arm | predictor parameters | train s | pred/copy | probe r: agent, block, angle | "
    head += " | ".join(f"seed {s}: met (push)" for s in seeds) + " | plan ms |"
    lines = [head, "|" + "---|" * (6 + len(seeds))]
    for arm, r in rows.items():
        p = r.get("probe")
        probe = ", ".join(f"{v:.3f}" for v in p.values()) if p else "-"
        plans = [r.get(f"seed{s}") for s in seeds]
        cells = [f"{e['met']} of {e['episodes']} ({e['push']})" if e else "-" for e in plans]
        ms = next((e["plan_ms_median"] for e in plans if e), "-")
        first = [f"{r.get('params_predictor', 0):,}", f"{r['train_s']:.0f}"]
        first += [f"{r['pred_over_copy']:.3f}", probe]
        lines.append(f"| {arm} | " + " | ".join([*first, *cells, str(ms)]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=2000, help="training steps of both arms")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="selection eval seeds")
    p.add_argument("--only", action="append", choices=list(ARMS), help="arm(s) to run")
    p.add_argument("--table-only", action="store_true", help="print the table of finished arms")
    p.add_argument("--json", action="store_true", help="also print one JSON object")
    p.add_argument("--runs", type=Path, default=ROOT / "runs", help="where the p-* runs are")
    args = p.parse_args(argv)
    if not args.table_only:
        if not DATA.exists():
            raise SystemExit(f"error: {DATA} is missing; run `bash recipes/pusht_v1.sh` first")
        for arm in args.only or list(ARMS):
            train_probe_plan(arm, args.steps, args.seeds, args.runs)
    runs = {a: run_dir(a, args.steps, args.runs) for a in ARMS}
    done = {a: r for a, r in runs.items() if (r / "train_summary.json").exists()}
    rows = {a: summary_of(r, args.seeds) for a, r in done.items()}
    print(table(rows, args.seeds))
    evals = {a: [str(runs[a] / f"eval-seed{s}.json") for s in args.seeds] for a in rows}
    if len(evals) == 2 and all(written(Path(f)) for fs in evals.values() for f in fs):
        rows["paired"] = paired(evals["paper-pred"], evals["lab"])
        r = rows["paired"]
        print(
            f"paired: paper-pred {r['a']}, lab {r['b']} of {r['episodes']}; met by one only "
            f"{r['only_a']} / {r['only_b']}, sign test p = {r['sign_test_p']}"
        )
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()

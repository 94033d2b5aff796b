"""What puts Push-T's block angle into the latent: physics, data and resolution, one at a time.

    python research/angle_factors.py [--steps 2000] [--only v1-expert ...] [--table-only]

Each arm trains the `lab` preset (seed 0, batch 64) for a full schedule of `--steps` steps on
1,000 episodes and probes its single-frame latents (`lewm probe`: linear and MLP r, the
untrained encoder, and the floor the rest of the true state gives):

    arm             physics                 data policy                        frames
    v1-expert       pusht-v1 (reference)    expert to the goal pose (the paper's)  64 px
    v1-random       pusht-v1                random contacts                    64 px
    v0-expert       pusht (v0, the lab's)   goal-directed expert (v0)          64 px
    v0-random       pusht (v0)              random contacts                    64 px
    v1-expert-128   pusht-v1                expert                             128 px

The two v1 arms are also probed on each other's data, so the angle is compared on the same
frames. Data go to data/, runs to runs/f-<arm> (runs/f-<arm>-<steps> for another --steps); a
step whose output exists is skipped. The table lists every finished run.
Prints a markdown table (and one JSON object with --json) of the probe r per arm.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STEPS = 2000
LEWM = [sys.executable, "-m", "lewm_core"]
QUANTITIES = ("agent_pos", "block_pos", "block_angle", "agent_vel")


@dataclass(frozen=True)
class Arm:
    name: str
    env: str
    policy: str  # the env's data policy: "default" (random contacts) or "expert"
    data_name: str  # the file under data/ (the recipes' names where a recipe collects it)
    resolution: int = 64

    @property
    def data(self) -> Path:
        return ROOT / "data" / self.data_name

    def run(self, steps: int = DEFAULT_STEPS) -> Path:
        """The run folder: runs/f-<arm>, or runs/f-<arm>-<steps> for another schedule."""
        suffix = "" if steps == DEFAULT_STEPS else f"-{steps}"
        return ROOT / "runs" / f"f-{self.name}{suffix}"


ARMS = (
    Arm("v1-expert", "pusht-v1", "expert", "pusht-v1.h5"),
    Arm("v1-random", "pusht-v1", "default", "pusht-v1-random.h5"),
    Arm("v0-expert", "pusht", "expert", "pusht-expert.h5"),
    Arm("v0-random", "pusht", "default", "pusht.h5"),
    Arm("v1-expert-128", "pusht-v1", "expert", "pusht-v1-128.h5", 128),
)
# raw steps per episode: the expert's episodes end at the goal (at most 300 steps), the
# random-contact policy's run 200 steps, as each env's recipe collects them
STEPS = {"expert": 300, "default": 200}


def written(path: Path) -> bool:
    """Whether a step's output file is there and not empty (an empty one is still being written)."""
    return path.exists() and path.stat().st_size > 0


def lewm(*args: str, out: Path | None = None) -> None:
    """Run one `lewm` command (its JSON line to `out`), raising if it fails."""
    t0 = time.perf_counter()
    with open(out, "w") if out else open("/dev/null", "w") as f:
        subprocess.run([*LEWM, *args], check=True, stdout=f, cwd=ROOT)
    print(f"{time.perf_counter() - t0:7.1f} s  lewm {' '.join(args)}", file=sys.stderr)


def collect(arm: Arm) -> None:
    if arm.data.exists():
        return
    arm.data.parent.mkdir(exist_ok=True)
    lewm(
        "collect", "--env", arm.env, "--policy", arm.policy, "--episodes", "1000",
        "--steps", str(STEPS[arm.policy]), "--resolution", str(arm.resolution), "--seed", "1",
        "--workers", "2", "--out", str(arm.data), "--quiet",
    )  # fmt: skip


def train_and_probe(arm: Arm, steps: int) -> None:
    run = arm.run(steps)
    if not (run / "train_summary.json").exists():
        lewm(
            "train", "--data", str(arm.data), "--preset", "lab", "--out", str(run),
            "--max-steps", str(steps), "--checkpoint-every", "1000", "--quiet", "--json",
        )  # fmt: skip
    probe = run / "probe.out"
    if not written(probe):
        lewm("probe", "--checkpoint", str(run), "--quiet", "--json", out=probe)


def cross_probe(model: Arm, data: Arm, steps: int) -> Path:
    """Probe `model`'s latents on `data`'s frames (same env and resolution)."""
    out = model.run(steps) / f"probe-on-{data.name}.out"
    if not written(out):
        lewm("probe", "--checkpoint", str(model.run(steps)), "--data", str(data.data),
             "--quiet", "--json", out=out)  # fmt: skip
    return out


def read_probe(path: Path) -> dict:
    """{quantity: (linear r, MLP r, untrained r, floor r)} of one `lewm probe --json` output."""
    d = json.loads(path.read_text().strip().splitlines()[-1])

    def r(part: dict, q: str) -> float | None:
        return part.get(q, {}).get("r")

    return {
        q: (
            r(d["linear"], q),
            r(d.get("mlp", {}), q),
            r(d.get("untrained", {}).get("linear", {}), q),
            r(d.get("state_floor", {}).get("linear", {}), q),
        )
        for q in QUANTITIES
    }


def table(rows: dict[str, dict]) -> str:
    """Markdown: one row per (arm, frames probed), linear r (MLP r) per quantity, and the
    angle's untrained-encoder and rest-of-state figures."""
    head = "| arm, probed on | " + " | ".join(QUANTITIES) + " | angle: untrained | angle: floor |"
    lines = [head, "|" + "---|" * (len(QUANTITIES) + 3)]
    for label, probe in rows.items():
        cells = [f"{probe[q][0]:.3f} ({probe[q][1]:.3f})" for q in QUANTITIES]
        angle = probe["block_angle"]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {angle[2]:.3f} | {angle[3]:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--steps", type=int, default=DEFAULT_STEPS, help="training steps of the arms run"
    )
    p.add_argument("--only", action="append", choices=[a.name for a in ARMS], help="arm(s)")
    p.add_argument("--table-only", action="store_true", help="print the table of finished arms")
    p.add_argument("--json", action="store_true", help="also print one JSON object")
    p.add_argument("--runs", type=Path, default=ROOT / "runs", help="where the f-* runs are")
    args = p.parse_args(argv)
    arms = [a for a in ARMS if not args.only or a.name in args.only]
    if not args.table_only:
        for arm in arms:
            collect(arm)
            train_and_probe(arm, args.steps)
        v1 = {a.name: a for a in ARMS}
        done = [(v1[a].run(args.steps) / "probe.out").exists() for a in ("v1-expert", "v1-random")]
        if all(done):
            cross_probe(v1["v1-expert"], v1["v1-random"], args.steps)
            cross_probe(v1["v1-random"], v1["v1-expert"], args.steps)
    rows = {}
    for run in sorted(args.runs.glob("f-*")):
        own = run / "probe.out"
        name = run.name.removeprefix("f-")
        if written(own):
            rows[f"{name}, own data"] = read_probe(own)
        for other in sorted(run.glob("probe-on-*.out")):
            if not written(other):
                continue
            rows[f"{name}, {other.stem.removeprefix('probe-on-')} data"] = read_probe(other)
    print(table(rows))
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()

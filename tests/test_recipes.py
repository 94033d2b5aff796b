"""The scripts that produce the shipped models (recipes/*.sh): they parse, and every env has a
recipe."""

from __future__ import annotations

import os
import subprocess

from lewm_testing import ROOT

from lewm_core.envs import ENV_NAMES, POLICIES


def test_recipe_scripts_parse_and_every_env_has_a_recipe():
    """Every recipes/*.sh parses (`bash -n`); `recipe ENV` sets the sizes the scripts read for
    each env, with Push-T's later stages well-formed, and names the choices for an unknown env."""
    for script in sorted((ROOT / "recipes").glob("*.sh")):
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{script.name}: {proc.stderr}"
    show = 'source recipes/recipes.sh && recipe "$0" && echo "$EPISODES|$STEPS|$TRAIN_STEPS|'
    show += '$ROUNDS|$MORE_DATA|$TOP_ROUND|$GOAL_KINDS|$LEWM|$MUJOCO_GL|$POLICY|$PROTOCOL"'
    clean = {k: v for k, v in os.environ.items() if k not in ("LEWM", "MUJOCO_GL")}
    for env in ENV_NAMES:
        proc = subprocess.run(
            ["bash", "-c", show, env], cwd=ROOT, capture_output=True, text=True, env=clean
        )
        assert proc.returncode == 0, proc.stderr
        fields = proc.stdout.strip().split("|")
        episodes, steps, train_steps, rounds, more, top, kinds, lewm, gl, policy, protocol = fields
        assert lewm == ".venv/bin/lewm" and gl == "egl"  # what the sourcing scripts share
        assert int(episodes) > 0 and int(steps) > 0 and int(train_steps) > 0
        if env == "pusht":
            assert all(len(r.split(":")) == 3 for r in rounds.split()) and kinds == "push"
            assert len(more.split(":")) == 3 and len(top.split(":")) == 4
        assert policy in POLICIES[env]
        # recipes/more_data.sh's episodes:seed:steps[:passes]
        assert not more or len(more.split(":")) in (3, 4) and all(map(int, more.split(":")))
        if env == "pusht-v1":  # the paper's data and evaluation protocol
            assert policy == "expert" and protocol == "--split all --goal-at-start not-counted"
    proc = subprocess.run(["bash", "-c", show, "atari"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "choose tworoom, pusht, pusht-v1, reacher or cube" in proc.stderr


def test_same_planner_compares_flag_pairs_in_any_order():
    """`same_planner` (recipes.sh) keeps report_and_ship from evaluating one planner twice."""
    check = 'source recipes/recipes.sh && same_planner "$0" "$1" && echo same || echo differ'
    published = "--sampling independent --context 1 --objective last --receding-horizon 5"
    cases = {
        "--objective last --receding-horizon 5 --sampling independent --context 1": "same",
        "--sampling block --context 1 --objective last --receding-horizon 5": "differ",
        "--sampling independent --context 1 --objective min --receding-horizon 2": "differ",
    }
    for other, want in cases.items():
        proc = subprocess.run(
            ["bash", "-c", check, published, other], cwd=ROOT, capture_output=True, text=True
        )
        assert proc.stdout.strip() == want, (other, proc.stderr)

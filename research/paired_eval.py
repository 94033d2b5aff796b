"""Two planners on the same evaluation tasks: paired success and an exact sign test.

    python research/paired_eval.py --a runs/a-seed0.json runs/a-seed1.json \
        --b runs/b-seed0.json runs/b-seed1.json [--json]

Each file is `lewm eval --json` output (its last line is the JSON summary); the i-th file of
--a and of --b must be the same tasks (the same dataset seed and episode count: `lewm eval`
draws its tasks from the seed alone, so two models evaluated with the same --data and --seed
face the same start and goal states; checked here by seed, count and each episode's goal kind).
Prints the successes of each side overall and per goal kind, the discordant pairs (tasks only
A meets, only B meets) and the two-sided exact sign test on them:

    p = min(1, 2 * sum_{k >= max(n_A, n_B)} C(n, k) / 2^n),   n = n_A + n_B

the probability, were the two planners equally good, of a split of the discordant tasks at
least this uneven. Independent success rates over the same tasks are not independent samples;
the paired test is the one that uses that.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def sign_test(only_a: int, only_b: int) -> float:
    """Two-sided exact sign test p-value of `only_a` against `only_b` discordant pairs."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = max(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n
    return min(1.0, 2 * tail)


def load_summary(path: str) -> dict:
    """The JSON summary on the last non-empty line of a `lewm eval --json` output file."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
    try:
        summary = json.loads(lines[-1])
        summary["episode_results"]  # noqa: B018 - present in every eval summary
    except (IndexError, json.JSONDecodeError, KeyError, TypeError):
        raise SystemExit(f"error: {path} does not end with a `lewm eval --json` summary") from None
    return summary


def paired(a_files: list[str], b_files: list[str]) -> dict:
    """Paired comparison of the episodes of matching files (see the module docstring)."""
    if len(a_files) != len(b_files):
        raise SystemExit("error: give as many --b files as --a files, in the same seed order")
    kinds: dict[str, dict[str, int]] = {}
    only_a = only_b = 0
    for fa, fb in zip(a_files, b_files, strict=True):
        a, b = load_summary(fa), load_summary(fb)
        ra, rb = a["episode_results"], b["episode_results"]
        same = a.get("seed") == b.get("seed") and len(ra) == len(rb)
        if not same or any(x["kind"] != y["kind"] for x, y in zip(ra, rb, strict=True)):
            raise SystemExit(f"error: {fa} and {fb} are not the same tasks (seed, count, kinds)")
        for x, y in zip(ra, rb, strict=True):
            k = kinds.setdefault(x["kind"], {"episodes": 0, "a": 0, "b": 0})
            k["episodes"] += 1
            k["a"] += bool(x["success"])
            k["b"] += bool(y["success"])
            only_a += bool(x["success"]) and not y["success"]
            only_b += bool(y["success"]) and not x["success"]
    return {
        "episodes": sum(k["episodes"] for k in kinds.values()),
        "a": sum(k["a"] for k in kinds.values()),
        "b": sum(k["b"] for k in kinds.values()),
        "kinds": kinds,
        "only_a": only_a,
        "only_b": only_b,
        "sign_test_p": round(sign_test(only_a, only_b), 4),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", nargs="+", required=True, help="`lewm eval --json` files of planner A")
    p.add_argument("--b", nargs="+", required=True, help="the same tasks' files of planner B")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    r = paired(args.a, args.b)
    n = r["episodes"]
    print(f"A {r['a']}/{n}, B {r['b']}/{n}")
    for kind, k in r["kinds"].items():
        print(f"  {kind:6s} A {k['a']}/{k['episodes']}, B {k['b']}/{k['episodes']}")
    print(f"only A {r['only_a']}, only B {r['only_b']}: sign test p = {r['sign_test_p']:.3f}")
    if args.json:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())

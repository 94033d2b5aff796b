"""Run one `lewm` command in this process, with optional fault injection (for the fault tests).

    python tests/reliability/fault_runner.py [--log-every N] [--progress FILE]
        [--die-at-replace N] [--die-when before|after] -- <lewm arguments>

--log-every N       new training runs log a metrics row every N steps (the CLI logs every 10),
                    so that the tests can see the exact step a run reached before it was killed
--progress FILE     after every training step, append "<step>\n" to FILE (when to kill)
--die-at-replace N  SIGKILL this process at the N-th atomic rename of `lewm_core.atomic` (the
                    moment a finished temporary file replaces its target): `before` the rename
                    (the temporary is complete, the target still the old one) or `after` it.
                    The deterministic counterpart of killing at a random moment.

Nothing else differs from `python -m lewm_core <arguments>`: the same `lewm_core.cli.main.main`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys


def _install(log_every: int | None, progress: str | None, die_at: int | None, when: str) -> None:
    if progress is not None:
        from lewm_core.training import trainer

        step = trainer.Trainer.step

        def logged_step(self, *args, **kwargs):
            metrics = step(self, *args, **kwargs)
            with open(progress, "a") as f:
                f.write(f"{self.step_count}\n")
            return metrics

        trainer.Trainer.step = logged_step
    if log_every is not None:
        from lewm_core.training import trainer

        original = trainer.TrainConfig.from_preset.__func__

        def from_preset(cls, *args, **kwargs):
            cfg = original(cls, *args, **kwargs)
            cfg.log_every = log_every  # saved with the run: a resumed run logs alike
            return cfg

        trainer.TrainConfig.from_preset = classmethod(from_preset)
    if die_at is not None:
        from lewm_core.atomic import TMP_MARK

        real_replace = os.replace
        count = [0]

        def replace(src, dst, *args, **kwargs):
            if TMP_MARK not in os.fspath(src):
                return real_replace(src, dst, *args, **kwargs)
            count[0] += 1
            if count[0] == die_at and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst, *args, **kwargs)
            if count[0] == die_at and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)

        os.replace = replace


def main() -> int:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser(prog="fault_runner")
    p.add_argument("--log-every", type=int)
    p.add_argument("--progress")
    p.add_argument("--die-at-replace", type=int)
    p.add_argument("--die-when", choices=("before", "after"), default="before")
    opts = p.parse_args(argv[:split])
    _install(opts.log_every, opts.progress, opts.die_at_replace, opts.die_when)
    from lewm_core.cli.main import main as lewm_main

    return lewm_main(argv[split + 1 :])


if __name__ == "__main__":  # spawned workers (collect --workers) import this file again
    sys.exit(main())

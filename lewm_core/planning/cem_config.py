"""The CEM planner's settings, each declared once with its help line and limits.

`lewm eval` and `lewm collect-planned` build their planning flags from these fields, `lewm ship`
the flags that record a model's default planning settings, the model folder's `planning` entry
(`PlanningDefaults`) is checked against them, and the lab's Plan page and the demo read their
limits and help from `knobs_of(CEMConfig)`. Torch-free, so that the command line's parser and a
config.json check read it without importing torch.

Limits that depend on another setting or on the model are cross-field checks in code
(`CEMConfig.validate`, `lewm_core.cli.planning.cem_from_args`): elites at most the samples, the
receding horizon at most the horizon, the context at most the model's history.
"""

from __future__ import annotations

from dataclasses import dataclass

from lewm_core.errors import UserError
from lewm_core.knobs import check_knobs, knob, knobs_of
from lewm_core.world_model.config import MAX_SIZES, OBJECTIVES, SAMPLINGS

# The rollout's precision (`planning.precision`); named here so the command line needs no torch.
PRECISION_CHOICES = ("auto", "float32", "bfloat16")
BF16_MIN_SPEEDUP = 1.5  # bfloat16 must multiply this many times faster than float32 to be used


@dataclass
class CEMConfig:
    """CEM settings; defaults as in the paper (300 samples x 30 iterations, the 30 cheapest
    refitted on, a horizon of 5 blocks, all executed before the next plan)."""

    # CEM holds samples x horizon predicted latents per iteration: the upper limits keep that
    # within a machine's memory and a plan within hours, far above any useful budget.
    samples: int = knob(300, "CEM candidates per iteration; the paper uses 300", lo=1, hi=100_000)
    elites: int = knob(
        30,
        "cheapest candidates the sampling distribution is refitted on, at most the samples; "
        "the paper uses 30",
        lo=1,
        hi=100_000,
    )
    iterations: int = knob(30, "CEM iterations per plan; the paper uses 30", lo=1, hi=10_000)
    horizon: int = knob(
        5, "action blocks per plan, each frameskip raw actions; the paper uses 5", lo=1, hi=100
    )
    init_std: float = knob(
        1.0,
        "standard deviation of the first iteration's candidates, in normalised action units",
        lo=0.0,
        lo_open=True,
    )
    sampling: str = knob(
        "block",
        "CEM action sampling: block holds one action per block, independent samples every raw "
        "action, as published",
        choices=SAMPLINGS,
    )
    receding_horizon: int = knob(
        5,
        "blocks of each plan executed before the next plan, at most the CEM horizon; "
        "published: all 5",
        lo=1,
        hi=100,
    )
    # The current frame and those 1, 2, ... blocks before it, with the blocks actually executed
    # between them, so the predictor sees motion (Reacher's velocities) at the start.
    context: int = knob(
        1,
        "observed frames each plan starts from, one block apart, with the blocks executed "
        "between them: 1, the current frame, as published; at most the model's history",
        lo=1,
        hi=MAX_SIZES["history"],
    )
    # "min" rates a plan that passes through the goal early by that, not by where it drifts
    # afterwards: the success test counts the goal reached at any step.
    objective: str = knob(
        "last",
        "a candidate's cost: its last predicted latent's squared distance to the goal's "
        "(last, as published) or the smallest over the horizon (min)",
        choices=OBJECTIVES,
    )

    def validate(self) -> None:
        """UserError naming the setting when one is outside its limits (`knobs_of`) or the
        elites exceed the samples, or the receding horizon the horizon."""
        check_knobs(self, {name: f"CEM {name.replace('_', ' ')}" for name in knobs_of(self)})
        if self.elites > self.samples:
            raise UserError(
                f"CEM elites must be at most the samples ({self.samples}), got {self.elites}"
            )
        if self.receding_horizon > self.horizon:
            raise UserError(
                f"CEM receding horizon {self.receding_horizon} exceeds the horizon {self.horizon}"
            )

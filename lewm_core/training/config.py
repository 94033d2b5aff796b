"""What a training run needs, declared once: `TrainConfig`, one `knob` per setting.

Each field carries its help line and its limits (`lewm_core.knobs`); `lewm train` builds its
flags from them (`TRAIN_FLAGS`, in the order `--help` lists them), `TrainConfig.validate` checks
them, and the lab's Train page reads the same limits for its widgets. Checks that relate two
fields (the extra data against the main data, one repeat per extra file) stay code here.

`TrainConfig.from_preset` starts from a named preset (`lewm_core.presets`: the paper's optimiser,
or what trains on two CPU cores); `from_dict` reads the config a run saved.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from lewm_core.errors import UserError
from lewm_core.knobs import check_knobs, knob, knobs_of
from lewm_core.presets import PRESET_NAMES, PRESETS

# The fields `lewm train` has a flag for, built by `knobs.add_flags` in this order (the other
# knobs are set through the Python API or a saved config, and their errors name the field).
TRAIN_FLAGS: tuple[str, ...] = (
    "epochs",
    "max_steps",
    "batch_size",
    "lr",
    "weight_decay",
    "sigreg_weight",
    "warmup_frac",
    "preload_max_gb",
    "seed",
    "device",
    "checkpoint_every",
    "threads",
    "loader_workers",
    "compile",
    "init_from",
    "rollout_steps",
    "rollout_context",
)

# Fields that must hold whole numbers (a knob alone would accept 3.0 for 3).
_WHOLE = (
    "epochs",
    "batch_size",
    "seed",
    "checkpoint_every",
    "log_every",
    "val_batches",
    "sigreg_projections",
    "sigreg_knots",
    "bn_recalib_batches",
    "rollout_steps",
    "rollout_context",
)
MAX_SEED = 2**32 - 1  # numpy's and torch's seeding both take it
MAX_EXTRA_REPEAT = 1000


class TrainingDiverged(UserError):
    """The loss or gradient became NaN/Inf; the last good checkpoint was kept."""

    collective = True  # raised on every rank at the same step: rank 0 reports it


@dataclass
class TrainConfig:
    """Everything a training run needs; `TrainConfig.from_preset` fills the preset's values."""

    data: str  # the .h5 file from `lewm collect`
    out: str  # the run folder
    preset: str = knob("lab", "model and optimiser preset", choices=PRESET_NAMES)
    epochs: int = knob(10, "passes over the training clips", lo=1)
    max_steps: int | None = knob(
        None, "stop after this many steps (before the epochs end)", kind=int, lo=1
    )
    batch_size: int = knob(
        64, "clips per step (the global batch over all processes)", lo=1, hi=65536
    )
    lr: float = knob(1e-3, "peak learning rate (AdamW)", lo=0, hi=1, lo_open=True, hi_open=True)
    weight_decay: float = knob(0.05, "AdamW weight decay of the weight matrices", lo=0)
    warmup_frac: float = knob(
        0.03,
        "fraction of the steps spent in the linear lr warm-up (preset default: paper 0.01, "
        "lab 0.03)",
        lo=0,
        hi=1,
    )
    grad_clip: float = knob(1.0, "clip the gradient norm to this", lo=0, lo_open=True)
    sigreg_weight: float = knob(0.09, "lambda; 0 disables SIGReg", lo=0, hi=100)
    sigreg_projections: int = knob(1024, "random directions SIGReg tests per step", lo=1)
    sigreg_knots: int = knob(17, "quadrature knots of SIGReg's characteristic function", lo=2)
    seed: int = knob(0, "seed of the weights, the data split and the data order", lo=0, hi=MAX_SEED)
    device: str = knob(
        "auto", "where to train (auto: CUDA if visible)", choices=("auto", "cpu", "cuda")
    )
    threads: int | None = knob(
        None, "CPU threads (default: every core, shared among processes)", kind=int, lo=1, hi=1024
    )
    val_fraction: float = knob(
        0.1,
        "fraction of the episodes held out for validation",
        lo=0,
        hi=1,
        lo_open=True,
        hi_open=True,
    )
    checkpoint_every: int = knob(
        250, "save a checkpoint (and validate) every this many steps", lo=1
    )
    log_every: int = knob(10, "write a metrics row every this many steps", lo=1)
    val_batches: int = knob(8, "validation batches per checkpoint", lo=0)
    bn_recalib_batches: int = knob(
        50, "training batches that re-estimate BatchNorm statistics per checkpoint", lo=0
    )
    preload_max_gb: float = knob(
        4.0,
        "read the dataset's pixels into RAM when they take at most this many GB (default 4; 0: "
        "never): then no batch waits on the disk",
        lo=0,
    )
    compile: bool = knob(
        False,
        "torch.compile the model for training (GPU; first steps are slow while it compiles)",
    )
    loader_workers: int | None = knob(
        None,
        "DataLoader worker processes per training process (default: 4 on CUDA, 0 on CPU)",
        kind=int,
        lo=0,
        hi=64,
    )
    # `--arch KEY=VALUE` settings on top of the preset's model (recorded in config.json)
    model_overrides: dict = field(default_factory=dict)
    init_from: str | None = knob(
        None,
        "fine-tune: start from this model's weights (a run or shipped folder of the same "
        "architecture) with a fresh optimiser and schedule; recorded in config.json",
        kind=str,
        metavar="MODEL_FOLDER",
    )
    rollout_steps: int = knob(
        0,
        "add a rollout loss (not in the paper): predict K latents autoregressively from the "
        "clip's first frames, as planning does (default 0: teacher forcing alone)",
        lo=0,
        hi=32,
        metavar="K",
    )
    rollout_context: int = knob(
        1,
        "true frames the rollout loss starts from (default 1, planning's default context)",
        lo=1,
        hi=32,
        metavar="C",
    )
    # training-only extra datasets of the same env (e.g. `lewm collect-planned`): every clip of
    # them joins the training split, drawn `extra_repeat` times as often as a clip of `data`
    # (one number for every file, or a list with one per file, each 1 to MAX_EXTRA_REPEAT)
    extra_data: list = field(default_factory=list)
    extra_repeat: int | list = 1

    @classmethod
    def from_preset(cls, name: str, data: str, out: str, **overrides) -> TrainConfig:
        """The config of preset `name` (`paper`, `lab`, `lab-vit`), with `overrides` applied
        (None values are left out: "not given")."""
        if name not in PRESETS:
            raise UserError(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
        values = dict(PRESETS[name].train)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(data=data, out=out, preset=name, **values)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """A saved config (`config.json` "train", the trainer state); unknown keys are dropped."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def validate(self) -> None:
        """Raise UserError naming any absurd value (by its flag) and the fix."""
        try:
            self._check_types()
            repeats = self.extra_repeats()
        except TypeError as e:  # e.g. a number saved as text in a damaged trainer state
            raise UserError(f"the training config holds a value of the wrong type ({e})") from None
        # knobs without a flag are named by their field (set in Python or a saved config)
        flagged = (*TRAIN_FLAGS, "preset")
        flagless = {name: name for name in knobs_of(self) if name not in flagged}
        check_knobs(self, flagless)
        if not all(1 <= r <= MAX_EXTRA_REPEAT for r in repeats):
            raise UserError(f"--extra-repeat must be between 1 and {MAX_EXTRA_REPEAT}")
        if not isinstance(self.extra_repeat, int) and len(repeats) != len(self.extra_data):
            raise UserError(
                f"--extra-repeat gives {len(repeats)} numbers for {len(self.extra_data)} "
                "--extra-data files: give one for all of them or one per file, in order"
            )
        if any(Path(p).resolve() == Path(self.data).resolve() for p in self.extra_data):
            raise UserError(
                "--extra-data names the --data file itself: its held-out episodes would be "
                "trained on; give a different file (e.g. from `lewm collect-planned`)"
            )
        if self.device == "cuda" and not _cuda_visible():
            raise UserError("--device cuda was asked for but no CUDA GPU is visible; use auto")

    def _check_types(self) -> None:
        """TypeError for a value of the wrong type (what the knobs' ranges cannot say)."""
        for name in _WHOLE:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer, got {value!r}")
        if not all(isinstance(p, str | os.PathLike) for p in (self.data, self.out)):
            raise TypeError("data and out must be paths")
        if not isinstance(self.model_overrides, dict):
            raise TypeError("model_overrides must be a dict")
        if self.init_from is not None and not isinstance(self.init_from, str | os.PathLike):
            raise TypeError("init_from must be a path")
        if not isinstance(self.extra_data, list | tuple) or not all(
            isinstance(p, str | os.PathLike) for p in self.extra_data
        ):
            raise TypeError("extra_data must be a list of paths")

    def extra_repeats(self) -> list[int]:
        """`extra_repeat` as one whole number per `extra_data` file (TypeError if it is neither
        a whole number nor a list of them)."""
        r = self.extra_repeat
        if isinstance(r, int) and not isinstance(r, bool):
            return [r] * len(self.extra_data)
        if isinstance(r, list | tuple) and all(
            isinstance(x, int) and not isinstance(x, bool) for x in r
        ):
            return list(r)
        raise TypeError(f"extra_repeat must be an integer or a list of them, got {r!r}")

    def clip_frames(self, history: int) -> int:
        """Frames per training clip: history + 1, or more when the rollout loss needs them."""
        if self.rollout_steps == 0:
            return history + 1
        return max(history + 1, self.rollout_context + self.rollout_steps)


def _cuda_visible() -> bool:
    import torch  # here: the command line builds its flags from this module without torch

    return torch.cuda.is_available()

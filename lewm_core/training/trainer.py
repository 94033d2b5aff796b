"""The LeWM trainer: next-embedding prediction + lambda * SIGReg, end to end from pixels.

    emb  = projector(encoder(pixels))                    (B, T, D)
    pred = pred_proj(predictor(emb[:, :-1], act[:, :-1])) (B, T-1, D)   teacher forcing, causal
    L    = mean((pred - emb[:, 1:])^2) + lambda * SIGReg(emb, per time step)

A step-wise Python API (`Trainer.step`, `Trainer.run`, `Trainer.request_stop`) that the CLI and the
lab both drive. A run folder holds `config.json`, `model.safetensors`, `trainer_state.safetensors`
(model + optimiser + RNG + step, one atomic file, for exact resume) and `metrics.jsonl`.
A NaN/Inf loss or gradient stops the run; the last good checkpoint stays on disk untouched.

One code path for one or several processes (`torchrun --nproc_per_node N -m lewm_core train`,
DistributedDataParallel; see `lewm_core.training.distributed`). `batch_size` is the GLOBAL batch:
the clips of step s are the same as in one process and rank r trains on the r-th contiguous shard of
them. SIGReg and BatchNorm see the global batch, so the gradients equal one process's on the
concatenated batch. Rank 0 alone logs, recalibrates, evaluates and writes; the others wait.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from lewm_core import __version__
from lewm_core.atomic import atomic_path, remove_stale_temporaries, write_json
from lewm_core.data.dataset import ClipDataset, ClipMix, dataset_info
from lewm_core.errors import UserError
from lewm_core.training import distributed as ddp
from lewm_core.world_model.checkpoint import (
    check_weights_match,
    expected_shapes,
    load_tensors,
    save_model,
    save_tensors,
    tensor_shapes,
)
from lewm_core.world_model.config import ModelConfig
from lewm_core.world_model.model import LeWM, recalibrate_batchnorm
from lewm_core.world_model.sigreg import sigreg

STATE_FILE = "trainer_state.safetensors"
METRICS_FILE = "metrics.jsonl"

# Optimiser settings per preset. `paper`: the paper's (hours on a GPU). `lab`: what trains on two
# CPU cores in minutes (peak lr 1e-3, weight decay 0.05, short warm-up, cosine).
TRAIN_PRESETS: dict[str, dict] = {
    "paper": dict(lr=5e-5, weight_decay=1e-3, batch_size=128, epochs=10, warmup_frac=0.01),
    "lab": dict(lr=1e-3, weight_decay=0.05, batch_size=64, epochs=10, warmup_frac=0.03),
    "lab-vit": dict(lr=1e-3, weight_decay=0.05, batch_size=64, epochs=10, warmup_frac=0.03),
}


class TrainingDiverged(UserError):
    """The loss or gradient became NaN/Inf; the last good checkpoint was kept."""

    collective = True  # raised on every rank at the same step: rank 0 reports it


@dataclass
class TrainConfig:
    """Everything a training run needs; `TrainConfig.from_preset` fills optimiser defaults."""

    data: str
    out: str
    preset: str = "lab"
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.03
    grad_clip: float = 1.0
    sigreg_weight: float = 0.09
    sigreg_projections: int = 1024
    sigreg_knots: int = 17
    seed: int = 0
    device: str = "auto"
    threads: int | None = None  # CPU threads for torch; None = every core
    val_fraction: float = 0.1
    checkpoint_every: int = 250
    log_every: int = 10
    val_batches: int = 8
    bn_recalib_batches: int = 50
    preload_max_gb: float = 4.0
    compile: bool = False  # torch.compile the training forward (meant for GPUs; off by default)
    loader_workers: int | None = None  # DataLoader processes; None = 4 on CUDA, 0 (in-line) on CPU
    model_overrides: dict = field(default_factory=dict)
    # fine-tuning: start from this model folder's weights (same architecture), fresh optimiser
    init_from: str | None = None
    # rollout loss (not in the paper): also predict rollout_steps latents autoregressively from
    # the first rollout_context frames of a longer clip, as planning does; 0 = off (published)
    rollout_steps: int = 0
    rollout_context: int = 1
    # training-only extra datasets of the same env (e.g. `lewm collect-planned`): every clip of
    # them joins the training split, drawn `extra_repeat` times as often as a clip of `data`
    # (one number for every file, or a list with one per file)
    extra_data: list = field(default_factory=list)
    extra_repeat: int | list = 1

    @classmethod
    def from_preset(cls, name: str, data: str, out: str, **overrides) -> TrainConfig:
        """The config of preset `name` (`paper`, `lab`, `lab-vit`), with `overrides` applied."""
        if name not in TRAIN_PRESETS:
            raise UserError(f"unknown preset '{name}'; choose one of {', '.join(TRAIN_PRESETS)}")
        values = dict(TRAIN_PRESETS[name])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(data=data, out=out, preset=name, **values)

    def validate(self) -> None:
        """Raise UserError naming any absurd value and the fix."""
        try:
            checks = self._checks()
        except TypeError as e:  # e.g. a number saved as text in a damaged trainer state
            raise UserError(f"the training config holds a value of the wrong type ({e})") from None
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        if self.device == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda was asked for but no CUDA GPU is visible; use auto")

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

    def _checks(self) -> list[tuple[bool, str]]:
        ints = ("epochs", "batch_size", "seed", "checkpoint_every", "log_every", "val_batches")
        ints += ("sigreg_projections", "sigreg_knots", "bn_recalib_batches")
        ints += ("rollout_steps", "rollout_context")
        for name in ints:
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int):
                raise TypeError(f"{name} must be an integer, got {getattr(self, name)!r}")
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
        repeats = self.extra_repeats()
        return [
            (self.epochs >= 1, "--epochs must be at least 1"),
            (0 <= self.seed < 2**32, "--seed must be between 0 and 4294967295"),
            (self.log_every >= 1 and self.val_batches >= 0, "log_every must be at least 1"),
            (self.sigreg_projections >= 1 and self.sigreg_knots >= 2, "bad SIGReg settings"),
            (0 <= self.warmup_frac <= 1, "--warmup-frac must be a number in [0, 1]"),
            (math.isfinite(self.grad_clip) and self.grad_clip > 0, "grad_clip must be positive"),
            (self.preload_max_gb >= 0, "--preload-max-gb must be 0 or more (0: never preload)"),
            (self.bn_recalib_batches >= 0, "bn_recalib_batches must be 0 or more"),
            (self.max_steps is None or self.max_steps >= 1, "--max-steps must be at least 1"),
            (1 <= self.batch_size <= 65536, "--batch-size must be between 1 and 65536"),
            (math.isfinite(self.lr) and 0 < self.lr < 1, "--lr must be a finite number in (0, 1)"),
            (math.isfinite(self.weight_decay) and self.weight_decay >= 0, "--weight-decay >= 0"),
            (
                math.isfinite(self.sigreg_weight) and 0 <= self.sigreg_weight <= 100,
                "--sigreg-weight must be a finite number in [0, 100]",
            ),
            (self.checkpoint_every >= 1, "--checkpoint-every must be at least 1"),
            (self.device in ("auto", "cpu", "cuda"), "--device must be auto, cpu or cuda"),
            (self.threads is None or 1 <= self.threads <= 1024, "--threads must be at least 1"),
            (
                self.loader_workers is None or 0 <= self.loader_workers <= 64,
                "--loader-workers must be between 0 and 64",
            ),
            (0 < self.val_fraction < 1, "val_fraction must be in (0, 1)"),
            (0 <= self.rollout_steps <= 32, "--rollout-steps must be between 0 (off) and 32"),
            (1 <= self.rollout_context <= 32, "--rollout-context must be between 1 and 32"),
            (all(1 <= r <= 1000 for r in repeats), "--extra-repeat must be between 1 and 1000"),
            (
                isinstance(self.extra_repeat, int) or len(repeats) == len(self.extra_data),
                f"--extra-repeat gives {len(repeats)} numbers for {len(self.extra_data)} "
                "--extra-data files: give one for all of them or one per file, in order",
            ),
            (
                all(Path(p).resolve() != Path(self.data).resolve() for p in self.extra_data),
                "--extra-data names the --data file itself: its held-out episodes would be "
                "trained on; give a different file (e.g. from `lewm collect-planned`)",
            ),
        ]

    def clip_frames(self, history: int) -> int:
        """Frames per training clip: history + 1, or more when the rollout loss needs them."""
        if self.rollout_steps == 0:
            return history + 1
        return max(history + 1, self.rollout_context + self.rollout_steps)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _metrics_step(line: str) -> int | None:
    """The step of one metrics.jsonl line, or None if the line is not a complete JSON row."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    step = row.get("step") if isinstance(row, dict) else None
    return step if isinstance(step, int) else None


def resume_config(out: str | os.PathLike) -> TrainConfig:
    """The training config of the run in folder `out`, as its last checkpoint saved it.

    Read from `trainer_state.safetensors`, the file `--resume` continues from (its metadata
    holds the config), not from `config.json`: a run killed while writing its first checkpoint
    may have the one without the other. `out` is set to the folder given, so a run folder that
    was moved or copied resumes where it is, not in the folder it was first trained in.
    """
    path = Path(out) / STATE_FILE
    if not path.is_file():
        raise UserError(f"nothing to resume in {out} (no {STATE_FILE}); drop --resume")
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            saved = json.loads(f.metadata()["trainer"])["config"]
        cfg = TrainConfig.from_dict(saved)
        cfg.validate()
    except Exception as e:  # noqa: BLE001 - any damage means the same thing to the user
        raise UserError(f"{path} is damaged ({str(e)[:120]}); start a new run") from None
    cfg.out = str(out)
    return cfg


def pick_device(name: str = "auto") -> torch.device:
    """`auto` -> CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 0 at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def step_batch_indices(
    step: int, num_clips: int, batch_size: int, steps_per_epoch: int, seed: int
) -> np.ndarray:
    """Clip indices (batch_size,) of the global batch of `step`: a fixed permutation per epoch."""
    epoch, b = divmod(step, steps_per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(num_clips)
    return perm[b * batch_size : (b + 1) * batch_size]


def effective_rank(z: torch.Tensor) -> float:
    """exp(entropy) of the normalised singular values of centred embeddings z (N, D)."""
    s = torch.linalg.svdvals(z.float() - z.float().mean(0))
    p = s / s.sum().clamp_min(1e-12)
    return float(torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum()))


class Trainer:
    """Trains a LeWM on a dataset; step-wise so that the CLI and the lab can drive it."""

    def __init__(self, cfg: TrainConfig, resume: bool = False):
        cfg.validate()
        self.cfg = cfg
        self.out = Path(cfg.out)
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--out {self.out} is a file; give a folder for the run")
        has_run = (self.out / STATE_FILE).exists() or (self.out / "config.json").exists()
        if has_run and not resume:
            raise UserError(
                f"run folder {self.out} already holds a run; pass --resume to continue it "
                "or choose another --out"
            )
        if resume and not (self.out / STATE_FILE).exists():
            raise UserError(f"nothing to resume in {self.out} (no {STATE_FILE}); drop --resume")
        # One process (world size 1, no process group) or one rank of a torchrun job.
        self.dist, self.device = ddp.setup(pick_device(cfg.device))
        world = self.dist.world_size
        if cfg.batch_size % world:
            raise UserError(
                f"--batch-size {cfg.batch_size} is the global batch and must be divisible by the "
                f"{world} processes; use a multiple of {world}"
            )
        self.local_batch_size = cfg.batch_size // world
        torch.manual_seed(cfg.seed)
        if self.device.type == "cpu":
            cores = (os.cpu_count() or 1) // self.dist.local_world_size
            torch.set_num_threads(cfg.threads or max(1, cores))

        info = dataset_info(cfg.data)
        preload = info["pixels_gb"] <= cfg.preload_max_gb
        try:
            mcfg = ModelConfig.preset(
                cfg.preset,
                action_dim=info["action_dim"],
                image_size=info["resolution"],
                **cfg.model_overrides,
            )
        except (ValueError, TypeError) as e:
            raise UserError(f"cannot build the {cfg.preset} model for {cfg.data} ({e})") from None
        if resume:  # the checkpoint's tensors fit this model? (checked before allocating it)
            state = self.out / STATE_FILE
            found = {k[6:]: v for k, v in tensor_shapes(state).items() if k.startswith("model.")}
            check_weights_match(state, found, expected_shapes(mcfg), "training config")
        split = dict(
            history=mcfg.history,
            frameskip=mcfg.frameskip,
            val_fraction=cfg.val_fraction,
            split_seed=cfg.seed,
            preload=preload,
            clip_frames=cfg.clip_frames(mcfg.history),
        )
        first = ClipDataset(cfg.data, "train", **split)
        self._preloaded = preload
        self.val_set = ClipDataset(  # shares the preloaded pixels: one copy in RAM, read once
            cfg.data,
            "val",
            action_stats=first.action_stats,
            pixels=first.pixels,
            **split,
        )
        self.train_set: ClipDataset | ClipMix = first
        if cfg.extra_data:
            self.train_set = ClipMix(
                first, self._extra_sets(info, split, first.action_stats), cfg.extra_repeats()
            )
        if len(self.train_set) < cfg.batch_size:
            raise UserError(
                f"the training split has {len(self.train_set)} clips, fewer than --batch-size "
                f"{cfg.batch_size}; collect more episodes or lower --batch-size"
            )
        self.model = LeWM(mcfg).to(self.device)
        if cfg.init_from is not None and not resume:
            self._init_weights(Path(cfg.init_from), mcfg)
        if world > 1:  # BatchNorm statistics over the global batch, as in one process
            ddp.convert_batchnorm(self.model)
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2]
        no_decay = [p for n, p in self.model.named_parameters() if p.ndim < 2]
        self.opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=cfg.lr,
            betas=(0.9, 0.999),
        )
        self.steps_per_epoch = len(self.train_set) // cfg.batch_size
        total = cfg.epochs * self.steps_per_epoch
        self.total_steps = min(total, cfg.max_steps) if cfg.max_steps else total
        self.warmup = max(1, int(cfg.warmup_frac * self.total_steps))
        self.step_count = 0
        self._stop = threading.Event()
        self._stop_agreed = False  # several processes: every rank stops after the same step
        self._sigreg_gen = torch.Generator()  # CPU, reseeded per step: same directions per rank
        self.last_metrics: dict = {}
        self.out.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:
            remove_stale_temporaries(self.out)
        if world > 1:  # every rank its own dropout stream (model init above used `seed` on all)
            torch.manual_seed(self._rank_seed())
        if resume:
            self._load_state()
        elif self.dist.is_main:
            (self.out / METRICS_FILE).write_text("")
        self._saved_at = self.step_count if resume else 0
        if cfg.loader_workers is not None:
            self.loader_workers = cfg.loader_workers
        else:
            self.loader_workers = 4 if self.device.type == "cuda" else 0
        # The module that trains: DDP (gradient all-reduce) around the model when world > 1,
        # optionally compiled. `self.model` stays the bare LeWM (state dicts, evaluation).
        self._net: torch.nn.Module = self.model
        if world > 1:
            self._net = torch.nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                forward_sync_buffers=False,  # BatchNorm buffers are updated alike on every rank
            )
        if cfg.compile:
            self._net = torch.compile(self._net)
        ddp.barrier()

    def _extra_sets(self, info: dict, split: dict, stats) -> list[ClipDataset]:
        """Every clip of each `--extra-data` file, z-scored with the main data's statistics."""
        sets = []
        for path in self.cfg.extra_data:
            extra = dataset_info(path)
            for key in ("env", "resolution", "action_dim"):
                if extra[key] != info[key]:
                    raise UserError(
                        f"--extra-data {path} has {key} {extra[key]}, --data {self.cfg.data} has "
                        f"{info[key]}; extra data must come from the same env and resolution"
                    )
            preload = extra["pixels_gb"] <= self.cfg.preload_max_gb and self._preloaded
            part = ClipDataset(path, "all", action_stats=stats, **{**split, "preload": preload})
            if len(part) == 0:
                raise UserError(
                    f"--extra-data {path} has no episode long enough for a training clip; "
                    "collect longer episodes (e.g. a larger --budget)"
                )
            sets.append(part)
        return sets

    # ---- data order: a fixed permutation per epoch, so step s always sees the same batch ----
    def batch_indices(self, step: int) -> np.ndarray:
        """Clip indices of the (global) batch of step `step`: (batch_size,)."""
        return step_batch_indices(
            step, len(self.train_set), self.cfg.batch_size, self.steps_per_epoch, self.cfg.seed
        )

    def rank_batch_indices(self, step: int) -> np.ndarray:
        """This process's shard of the batch of step `step`: (batch_size / world_size,).

        Rank r takes the r-th contiguous slice, so the ranks' shards concatenated in rank order
        are the global batch of one process.
        """
        r, n = self.dist.rank, self.local_batch_size
        return self.batch_indices(step)[r * n : (r + 1) * n]

    def _prefetched_batches(self, start: int) -> Iterator[dict[str, torch.Tensor]]:
        """This rank's batches of steps start, start + 1, ... from a DataLoader with workers.

        Yields what `train_set.batch(rank_batch_indices(s))` returns (pinned on CUDA). The
        loader has its own generator, so the global torch RNG (dropout) is not consumed.
        """
        source = _StepBatches(
            self.train_set,
            self.cfg.batch_size,
            self.steps_per_epoch,
            self.cfg.seed,
            self.dist.rank,
            self.local_batch_size,
        )
        loader = torch.utils.data.DataLoader(
            source,
            batch_size=None,
            sampler=range(start, self.total_steps),
            num_workers=self.loader_workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=2,  # batches per worker in flight
            # Preloaded pixels: fork shares them copy-on-write. Read from HDF5: spawn, so that no
            # worker inherits an open h5py handle (ClipDataset drops it when pickled).
            multiprocessing_context="fork" if self._preloaded else "spawn",
            generator=torch.Generator().manual_seed(self.cfg.seed),
            worker_init_fn=_ignore_sigint,  # Ctrl-C is the main process's: it stops in step
        )
        it = iter(loader)
        try:
            yield from it
        finally:
            del it  # shuts the workers down

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def loss_terms(
        self, batch: dict[str, torch.Tensor], collective: bool = False
    ) -> dict[str, torch.Tensor]:
        """Loss, prediction loss, SIGReg and embeddings (B, T, D) of one batch.

        With the rollout loss on (`rollout_steps` K > 0) also `rollout_loss`, the mean squared
        error of the K latents predicted autoregressively from the clip's first frames, added
        to the loss with weight 1; SIGReg then covers every frame of the longer clip.

        collective=True (training steps; every rank must call it): the forward runs through DDP
        and SIGReg is that of the global batch (all ranks' embeddings gathered). Then `loss` is
        this rank's objective (local prediction loss + lambda * global SIGReg): DDP's mean over
        ranks of its gradient is the gradient of the global-batch loss. collective=False: this
        process's batch alone (evaluation), no communication.
        """
        pixels = batch["pixels"].to(self.device, non_blocking=True)
        actions = batch["actions"].to(self.device, non_blocking=True)
        with self._autocast():
            out = (self._net if collective else self.model)(
                pixels, actions, self.cfg.rollout_steps, self.cfg.rollout_context
            )
        emb, pred = out["emb"].float(), out["pred"].float()
        pred_loss = F.mse_loss(pred, emb[:, 1 : pred.shape[1] + 1])
        if self.cfg.sigreg_weight > 0 or not self.model.training:
            reg = (ddp.global_sigreg if collective else sigreg)(
                emb.transpose(0, 1),
                self.cfg.sigreg_projections,
                self.cfg.sigreg_knots,
                generator=self._sigreg_gen,
            )
        else:
            reg = torch.zeros((), device=emb.device)
        loss = pred_loss + self.cfg.sigreg_weight * reg
        terms = {"pred_loss": pred_loss, "sigreg": reg, "emb": emb}
        if "rollout" in out:
            c = self.cfg.rollout_context
            roll = out["rollout"].float()
            terms["rollout_loss"] = F.mse_loss(roll, emb[:, c : c + roll.shape[1]])
            loss = loss + terms["rollout_loss"]
        return {"loss": loss, **terms}

    def step(self, batch: dict[str, torch.Tensor] | None = None) -> dict:
        """One optimiser step; returns its metrics. Raises TrainingDiverged on NaN/Inf.

        Every rank calls it together. `batch`: this rank's shard of the step's batch if already
        loaded (the prefetching DataLoader of `run`), else it is read here. The metrics are those
        of the global batch and identical on every rank; so is the NaN/Inf decision.
        """
        s = self.step_count
        t0 = time.perf_counter()
        self.model.train()
        lr = lr_at(s, self.total_steps, self.cfg.lr, self.warmup)
        for g in self.opt.param_groups:
            g["lr"] = lr
        self._sigreg_gen.manual_seed(self.cfg.seed * 1_000_003 + s)
        if batch is None:
            batch = self.train_set.batch(self.rank_batch_indices(s))
        terms = self.loss_terms(batch, collective=True)
        loss = terms["loss"]
        pred_loss = terms["pred_loss"].detach()
        rollout_loss = terms.get("rollout_loss", torch.zeros_like(pred_loss)).detach()
        if self.dist.world_size > 1:
            # Global prediction losses (equal shards: the mean of the ranks' means) and the vote
            # to stop (any rank asked): one all-reduce, after which every rank agrees.
            stop = pred_loss.new_tensor(float(self._stop.is_set()))
            shared = torch.stack([pred_loss, rollout_loss, stop])
            ddp.all_reduce_sum_(shared)
            pred_loss, rollout_loss = (
                shared[0] / self.dist.world_size,
                shared[1] / self.dist.world_size,
            )
            self._stop_agreed = self._stop_agreed or bool(shared[2] > 0)
            loss_value = (
                pred_loss + rollout_loss + self.cfg.sigreg_weight * terms["sigreg"].detach()
            )
        else:
            loss_value = loss.detach()
        if not torch.isfinite(loss_value):
            self._diverged(f"loss became {float(loss_value)}")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()  # DDP averages the ranks' gradients here
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        finite = torch.isfinite(grad_norm)
        if self.dist.world_size > 1:  # the averaged gradients agree; make the decision agree too
            finite = ddp.all_reduce_sum_((~finite).float()) == 0
        if not finite:
            self._diverged(f"gradient norm became {float(grad_norm)}")
        self.opt.step()
        self.step_count += 1
        dt = time.perf_counter() - t0
        metrics = {
            "step": self.step_count,
            "epoch": s // self.steps_per_epoch,
            "loss": float(loss_value),
            "pred_loss": float(pred_loss),
            "sigreg": float(terms["sigreg"].detach()),
            "lr": lr,
            "grad_norm": float(grad_norm),
            "samples_per_s": self.cfg.batch_size / dt,
        }
        if "rollout_loss" in terms:
            metrics["rollout_loss"] = float(rollout_loss)
        self.last_metrics = metrics
        if self.step_count % self.cfg.log_every == 0 or self.step_count == 1:
            self._log(metrics)
        return metrics

    def _diverged(self, what: str) -> None:
        last = self._saved_step()
        kept = f"the last good checkpoint (step {last}) is kept" if last else "nothing was saved"
        raise TrainingDiverged(
            f"training stopped at step {self.step_count + 1}: {what}; {kept} in {self.out}; "
            "lower --lr or --sigreg-weight and --resume"
        )

    def _saved_step(self) -> int:
        path = self.out / STATE_FILE
        if not path.exists():
            return 0
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            return int(json.loads(f.metadata()["trainer"])["step"])

    def _log(self, row: dict) -> None:
        if not self.dist.is_main:  # one metrics.jsonl, written by rank 0
            return
        with open(self.out / METRICS_FILE, "a") as f:
            f.write(json.dumps(row) + "\n")

    def _init_weights(self, folder: Path, mcfg: ModelConfig) -> None:
        """Copy the weights of the model in `folder` into the new model (fine-tuning); UserError
        if `folder` holds no model or one of another architecture than this run's."""
        weights = folder / "model.safetensors"
        found = tensor_shapes(weights)  # header only: a mismatch is refused before loading
        check_weights_match(weights, found, expected_shapes(mcfg), "run's model (--init-from)")
        self.model.load_state_dict(load_tensors(weights))

    def _rank_seed(self) -> int:
        """Seed of this rank's torch RNG (dropout) in a multi-process run."""
        return int(np.random.SeedSequence([self.cfg.seed, self.dist.rank, 7]).generate_state(1)[0])

    def _val_batches(self) -> list[np.ndarray]:
        n = len(self.val_set)
        if n == 0:
            return []
        order = np.random.default_rng(12345).permutation(n)
        bs = min(self.cfg.batch_size, n)
        batches = [order[i : i + bs] for i in range(0, min(n, bs * self.cfg.val_batches), bs)]
        # SIGReg (a statistic of the batch) needs at least 2 clips: a last batch of 1 clip
        # (e.g. 9 validation clips at batch size 8) is dropped, as is a split of 1 clip.
        return [b for b in batches if len(b) >= 2]

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Validation losses and the collapse monitor, in eval mode (BatchNorm running stats).

        Also the prediction loss with BatchNorm on batch statistics (dropout off), which eval
        mode should match once the BatchNorm statistics are recalibrated.
        """
        batches = self._val_batches()
        if not batches:
            return {}
        with ddp.local_batchnorm(self.model):  # this process alone: no collective
            return self._evaluate(batches)

    def _evaluate(self, batches: list[np.ndarray]) -> dict:
        self.model.eval()
        self._sigreg_gen.manual_seed(777)
        sums: dict[str, float] = {}
        embs = []
        for idx in batches:
            t = self.loss_terms(self.val_set.batch(idx))
            emb = t["emb"]
            n = self.model.cfg.history + 1  # the frames the prediction loss covers
            copy = F.mse_loss(emb[:, : n - 1], emb[:, 1:n])
            for k, v in (
                ("val_pred_loss", t["pred_loss"]),
                ("val_sigreg", t["sigreg"]),
                ("val_copy_loss", copy),
                *([("val_rollout_loss", t["rollout_loss"])] if "rollout_loss" in t else []),
            ):
                sums[k] = sums.get(k, 0.0) + float(v)
            embs.append(emb.reshape(-1, emb.shape[-1]))
        with _batchnorm_on_batch_stats(self.model):
            for idx in batches:
                t = self.loss_terms(self.val_set.batch(idx))
                sums["val_pred_loss_batchstats"] = sums.get(
                    "val_pred_loss_batchstats", 0.0
                ) + float(t["pred_loss"])
        out = {k: v / len(batches) for k, v in sums.items()}
        z = torch.cat(embs)
        std = z.float().std(0)
        out.update(
            emb_std_mean=float(std.mean()),
            emb_std_min=float(std.min()),
            effective_rank=effective_rank(z),
            pred_over_copy=out["val_pred_loss"] / max(out["val_copy_loss"], 1e-12),
        )
        return out

    def recalibrate(self) -> None:
        """Re-estimate BatchNorm running statistics on training batches with frozen weights."""
        n = min(self.cfg.bn_recalib_batches, self.steps_per_epoch)
        rng = np.random.default_rng([self.cfg.seed, 99])

        def batches():
            for _ in range(n):
                idx = rng.choice(len(self.train_set), self.cfg.batch_size, replace=False)
                b = self.train_set.batch(idx)
                yield b["pixels"].to(self.device), b["actions"].to(self.device)

        with torch.no_grad(), self._autocast(), ddp.local_batchnorm(self.model):
            recalibrate_batchnorm(self.model, batches(), n)

    def save_checkpoint(self) -> None:
        """Recalibrate BatchNorm, evaluate, and write model + resume state atomically.

        Several processes: every rank calls it. Rank 0 alone recalibrates and evaluates (on the
        global batch size, as one process does) while the others wait; the ranks' RNG states
        go to rank 0, which writes; then every rank takes rank 0's BatchNorm statistics and
        evaluation.
        """
        if self.dist.is_main:
            self.recalibrate()
            ev = self.evaluate()
            if ev:
                epoch = self.step_count // self.steps_per_epoch
                self._log({"step": self.step_count, "epoch": epoch, **ev})
                self.last_eval = ev
        rng = {"rng.torch": ddp.all_gather_object(torch.get_rng_state())}
        if self.device.type == "cuda":
            rng["rng.cuda"] = ddp.all_gather_object(torch.cuda.get_rng_state(self.device).cpu())
        if self.dist.is_main:
            tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
            for i, st in self.opt.state_dict()["state"].items():
                for k, v in st.items():
                    tensors[f"opt.{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
            for key, states in rng.items():  # rank 0 under `key`, rank r under `key.rank<r>`
                for r, state in enumerate(states):
                    tensors[key if r == 0 else f"{key}.rank{r}"] = state
            meta = {"trainer": json.dumps({"step": self.step_count, "config": asdict(self.cfg)})}
            # The resume state first, then the model and its config: a kill in between leaves
            # a state newer than the model files, which `_load_state` completes on --resume.
            save_tensors(self.out / STATE_FILE, tensors, metadata=meta)
            save_model(self.out, self.model, self.val_set.action_stats, self.run_meta())
        if self.dist.world_size > 1:
            ddp.barrier()  # the files are complete before any rank goes on
            ddp.broadcast_buffers(self.model)  # rank 0's recalibrated BatchNorm statistics
            ev = ddp.broadcast_object(getattr(self, "last_eval", None))
            if ev is not None:
                self.last_eval = ev
        self._saved_at = self.step_count

    def run_meta(self) -> dict:
        ds = self.val_set  # the --data file's (extra data only adds training clips)
        return {
            "lewm_version": __version__,
            "step": self.step_count,
            "train": asdict(self.cfg),
            "data": {
                "path": str(self.cfg.data),
                "env": ds.env_name,
                "resolution": ds.resolution,
                "action_dim": ds.action_dim,
                "state_quantities": ds.state_quantities,
                "angle_quantities": list(ds.angle_quantities),
                "val_fraction": self.cfg.val_fraction,
                "split_seed": self.cfg.seed,
            },
            "eval": getattr(self, "last_eval", {}),
        }

    def _load_state(self) -> None:
        path = self.out / STATE_FILE
        from safetensors import safe_open

        try:
            with safe_open(str(path), "pt") as f:
                meta = json.loads(f.metadata()["trainer"])
            tensors = load_file(str(path))
        except Exception as e:  # noqa: BLE001 - any damage means the same thing to the user
            raise UserError(f"{path} is damaged ({e}); start a new run") from None
        try:  # wrong keys, shapes or values: the file belongs to another model or is damaged
            self._restore(tensors, meta)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
            raise UserError(
                f"{path} does not fit the run's model and optimiser "
                f"({str(e).strip().splitlines()[0][:120]}); start a new run"
            ) from None
        # The evaluation of the checkpoint we resume from (config.json may be one checkpoint
        # older, if a kill fell between the two files: then there is none).
        with contextlib.suppress(OSError, ValueError, AttributeError):
            saved = json.loads((self.out / "config.json").read_text())
            if saved.get("step") == self.step_count and isinstance(saved.get("eval"), dict):
                self.last_eval = saved["eval"]
        if not self.dist.is_main:
            return
        # Drop metrics logged after the checkpoint: the resumed run logs those steps again.
        # A line that does not parse (a write cut short: disk full, power loss) is dropped too.
        mpath = self.out / METRICS_FILE
        rows = mpath.read_text(errors="replace").splitlines() if mpath.exists() else []
        kept = [
            r for r in rows if _metrics_step(r) is not None and _metrics_step(r) <= self.step_count
        ]
        with atomic_path(mpath) as tmp:
            tmp.write_text("".join(r + "\n" for r in kept))
        if self._model_files_step() != self.step_count:
            # Killed after writing the state of this checkpoint but before its model.safetensors
            # and config.json: write them now from the restored (recalibrated) weights, with the
            # evaluation logged for this step. Otherwise a run resumed at its last step would end
            # with the model of the checkpoint before.
            for r in kept:
                row = json.loads(r)
                if row.get("step") == self.step_count and "val_pred_loss" in row:
                    self.last_eval = {k: v for k, v in row.items() if k not in ("step", "epoch")}
            save_model(self.out, self.model, self.val_set.action_stats, self.run_meta())

    def _model_files_step(self) -> int | None:
        """The step recorded in config.json beside a model.safetensors (None if either is missing
        or unreadable)."""
        if not (self.out / "model.safetensors").is_file():
            return None
        try:
            step = json.loads((self.out / "config.json").read_text()).get("step")
        except (OSError, ValueError, AttributeError):
            return None
        return step if isinstance(step, int) else None

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        """Model, optimiser, RNG and step from the tensors of a trainer_state file."""
        step = int(meta["step"])
        if step < 0:
            raise ValueError(f"negative step {step}")
        model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_state_dict(model_state)  # strict: names and shapes must match
        params = [p for g in self.opt.param_groups for p in g["params"]]
        opt_state = self.opt.state_dict()
        for key, v in tensors.items():
            if key.startswith("opt."):
                _, i, name = key.split(".", 2)
                p = params[int(i)]
                if name in ("exp_avg", "exp_avg_sq") and v.shape != p.shape:
                    raise ValueError(f"'{key}' has shape {tuple(v.shape)}, not {tuple(p.shape)}")
                opt_state["state"].setdefault(int(i), {})[name] = v.to(self.device)
        self.opt.load_state_dict(opt_state)
        suffix = f".rank{self.dist.rank}" if self.dist.rank else ""
        if f"rng.torch{suffix}" in tensors:
            torch.set_rng_state(tensors[f"rng.torch{suffix}"])
        else:  # a rank the saving run did not have (resumed on more processes)
            torch.manual_seed(self._rank_seed() + step)
        if self.device.type == "cuda" and f"rng.cuda{suffix}" in tensors:
            torch.cuda.set_rng_state(tensors[f"rng.cuda{suffix}"], self.device)
        self.step_count = step

    def request_stop(self) -> None:
        """Ask `run` to stop after the current step (it then saves a checkpoint)."""
        self._stop.set()

    def run(self, callback: Callable[[dict], None] | None = None) -> dict:
        """Train to `total_steps` (or until `request_stop`), checkpointing on the way.

        Returns a summary dict. `callback(metrics)` is called after every step. Several
        processes: every rank runs it; they stop after the same step (a stop asked of any rank
        is agreed on in the next step) and all return rank 0's summary.
        """
        t0 = time.perf_counter()
        start = self.step_count
        batches = None
        if self.loader_workers > 0 and self.step_count < self.total_steps:
            batches = self._prefetched_batches(self.step_count)
        try:
            while self.step_count < self.total_steps and not self._stopping():
                m = self.step(next(batches) if batches is not None else None)
                if callback is not None:
                    callback(m)
                if self.step_count % self.cfg.checkpoint_every == 0:
                    self.save_checkpoint()
        finally:
            if batches is not None:
                batches.close()
        if self._saved_at != self.step_count:
            self.save_checkpoint()
        wall = time.perf_counter() - t0
        if self.dist.is_main:
            summary = self._summary(start, wall)
        return ddp.broadcast_object(summary if self.dist.is_main else None)

    def _stopping(self) -> bool:
        if self.dist.world_size > 1:
            return self._stop_agreed  # decided together in `step`
        return self._stop.is_set()

    def _summary(self, start: int, wall: float) -> dict:
        ev = getattr(self, "last_eval", {})
        summary_path = self.out / "train_summary.json"
        previous = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        summary = {
            "run": str(self.out),
            "steps": self.step_count,
            "total_steps": self.total_steps,
            "stopped_early": self.step_count < self.total_steps,
            "wall_s": round(wall, 2),
            "total_wall_s": round(previous.get("total_wall_s", 0.0) + wall, 2),
            "samples_per_s": round(
                (self.step_count - start) * self.cfg.batch_size / max(wall, 1e-9), 1
            ),
            "loss": self.last_metrics.get("loss"),
            **{
                k: ev.get(k)
                for k in ("val_pred_loss", "val_copy_loss", "emb_std_mean", "effective_rank")
            },
        }
        if self.dist.world_size > 1:
            summary["world_size"] = self.dist.world_size
            summary["samples_per_s_per_process"] = round(
                summary["samples_per_s"] / self.dist.world_size, 1
            )
        write_json(summary_path, summary)
        return summary


def _ignore_sigint(worker_id: int) -> None:
    """DataLoader worker start-up: ignore SIGINT. A Ctrl-C reaches the whole process group; a
    worker that died of it would fail the batch the main process is waiting for, whereas the
    main process stops cleanly after the current step (and shuts the workers down)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _StepBatches(torch.utils.data.Dataset):
    """Item s: one rank's shard of the global batch of step s (what `Trainer.step` trains on).

    For a DataLoader with `batch_size=None`: a worker loads whole batches with the vectorised
    `ClipDataset.batch`. Holds only plain values, so it pickles to spawned workers too.
    """

    def __init__(
        self,
        clips: ClipDataset | ClipMix,
        batch_size: int,
        steps_per_epoch: int,
        seed: int,
        rank: int,
        local_batch_size: int,
    ):
        self.clips = clips
        self.batch_size, self.steps_per_epoch, self.seed = batch_size, steps_per_epoch, seed
        self.rank, self.local_batch_size = rank, local_batch_size

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        idx = step_batch_indices(
            step, len(self.clips), self.batch_size, self.steps_per_epoch, self.seed
        )
        n = self.local_batch_size
        return self.clips.batch(idx[self.rank * n : (self.rank + 1) * n])


class _batchnorm_on_batch_stats:
    """Context: BatchNorm layers use batch statistics (momentum 0: running stats untouched)."""

    def __init__(self, model: torch.nn.Module):
        self.bns = [
            m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        ]

    def __enter__(self):
        self.saved = [(m.training, m.momentum) for m in self.bns]
        for m in self.bns:
            m.train()
            m.momentum = 0.0

    def __exit__(self, *exc):
        for m, (training, momentum) in zip(self.bns, self.saved, strict=True):
            m.train(training)
            m.momentum = momentum

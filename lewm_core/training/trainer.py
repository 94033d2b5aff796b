"""The LeWM trainer's loop: next-embedding prediction + lambda * SIGReg, end to end from pixels.

    emb  = projector(encoder(pixels))                    (B, T, D)
    pred = pred_proj(predictor(emb[:, :-1], act[:, :-1])) (B, T-1, D)   teacher forcing, causal
    L    = mean((pred - emb[:, 1:])^2) + lambda * SIGReg(emb, per time step)

`Trainer` builds the run (model, optimiser, data) and then steps, logs, checkpoints and stops;
the CLI and the lab both drive it (`Trainer.step`, `Trainer.run`, `Trainer.request_stop`).
What it calls lives beside it, one idea per module:

    config.py      TrainConfig: every setting with its help and limits; the presets' values
    batches.py     the train/validation split, the clips of each step, the prefetching loader
    validation.py  validation losses, the collapse monitor, BatchNorm re-estimation
    state.py       the training state file, exact resume, repairs after a kill

A run folder holds `config.json`, `model.safetensors`, `trainer_state.safetensors` (model +
optimiser + RNG + step, one atomic file, for exact resume) and `metrics.jsonl`
(`lewm_core.folders` names them). A NaN/Inf loss or gradient stops the run; the last good
checkpoint stays on disk untouched.

One code path for one or several processes (`torchrun --nproc_per_node N -m lewm_core train`,
DistributedDataParallel; see `lewm_core.training.distributed`). `batch_size` is the GLOBAL batch:
the clips of step s are the same as in one process and rank r trains on the r-th contiguous shard of
them. SIGReg and BatchNorm see the global batch, so the gradients equal one process's on the
concatenated batch. Rank 0 alone logs, recalibrates, evaluates and writes; the others wait.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lewm_core import __version__
from lewm_core.atomic import remove_stale_temporaries, write_json
from lewm_core.data.dataset import dataset_info
from lewm_core.errors import UserError
from lewm_core.folders import CONFIG_FILE, METRICS_FILE, MODEL_FILE, STATE_FILE, SUMMARY_FILE
from lewm_core.training import distributed as ddp
from lewm_core.training import state, validation
from lewm_core.training.batches import (
    StepBatches,
    load_splits,
    prefetched_batches,
    step_batch_indices,
)
from lewm_core.training.config import TrainConfig, TrainingDiverged
from lewm_core.world_model.checkpoint import (
    check_weights_match,
    expected_shapes,
    load_tensors,
    save_model,
    save_tensors,
    tensor_shapes,
)
from lewm_core.world_model.config import ModelConfig
from lewm_core.world_model.cpu_kernels import machine_description
from lewm_core.world_model.model import LeWM
from lewm_core.world_model.sigreg import sigreg

# What callers import from here: the config and the resume entry point with the loop.
__all__ = ["Trainer", "lr_at", "pick_device"]


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


class Trainer:
    """Trains a LeWM on a dataset; step-wise so that the CLI and the lab can drive it."""

    def __init__(self, cfg: TrainConfig, resume: bool = False):
        cfg.validate()
        self.cfg = cfg
        self.out = Path(cfg.out)
        self._check_run_folder(resume)
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
        mcfg = self._model_config(info, resume)
        self.train_set, self.val_set, self._preloaded = load_splits(
            cfg, info, mcfg.history, mcfg.frameskip
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

    def _check_run_folder(self, resume: bool) -> None:
        """Refuse --out that is a file, holds a run (without --resume) or none (with it)."""
        if self.out.exists() and not self.out.is_dir():
            raise UserError(f"--out {self.out} is a file; give a folder for the run")
        has_run = (self.out / STATE_FILE).exists() or (self.out / CONFIG_FILE).exists()
        if has_run and not resume:
            raise UserError(
                f"run folder {self.out} already holds a run; pass --resume to continue it "
                "or choose another --out"
            )
        if resume and not (self.out / STATE_FILE).exists():
            raise UserError(f"nothing to resume in {self.out} (no {STATE_FILE}); drop --resume")

    def _model_config(self, info: dict, resume: bool) -> ModelConfig:
        """The preset's model with --arch on top, sized by the dataset; on resume, checked
        against the checkpoint's tensors before anything is allocated."""
        cfg = self.cfg
        try:
            mcfg = ModelConfig.preset(
                cfg.preset,
                action_dim=info["action_dim"],
                image_size=info["resolution"],
                **cfg.model_overrides,
            )
        except (ValueError, TypeError) as e:
            raise UserError(f"cannot build the {cfg.preset} model for {cfg.data} ({e})") from None
        if resume:
            path = self.out / STATE_FILE
            found = {k[6:]: v for k, v in tensor_shapes(path).items() if k.startswith("model.")}
            check_weights_match(path, found, expected_shapes(mcfg), "training config")
        return mcfg

    def _init_weights(self, folder: Path, mcfg: ModelConfig) -> None:
        """Copy the weights of the model in `folder` into the new model (fine-tuning); UserError
        if `folder` holds no model or one of another architecture than this run's."""
        weights = folder / MODEL_FILE
        found = tensor_shapes(weights)  # header only: a mismatch is refused before loading
        check_weights_match(weights, found, expected_shapes(mcfg), "run's model (--init-from)")
        self.model.load_state_dict(load_tensors(weights))

    def _rank_seed(self) -> int:
        """Seed of this rank's torch RNG (dropout) in a multi-process run."""
        return int(np.random.SeedSequence([self.cfg.seed, self.dist.rank, 7]).generate_state(1)[0])

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
        """This rank's batches of steps start, start + 1, ... from a DataLoader with workers:
        what `train_set.batch(rank_batch_indices(s))` returns (pinned on CUDA)."""
        source = StepBatches(
            self.train_set,
            self.cfg.batch_size,
            self.steps_per_epoch,
            self.cfg.seed,
            self.dist.rank,
            self.local_batch_size,
        )
        return prefetched_batches(
            source,
            start,
            self.total_steps,
            workers=self.loader_workers,
            seed=self.cfg.seed,
            pin=self.device.type == "cuda",
            preloaded=self._preloaded,
        )

    # ---- one step ----
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
        last = state.saved_step(self.out)
        kept = f"the last good checkpoint (step {last}) is kept" if last else "nothing was saved"
        raise TrainingDiverged(
            f"training stopped at step {self.step_count + 1}: {what}; {kept} in {self.out}; "
            "lower --lr or --sigreg-weight and --resume"
        )

    def _log(self, row: dict) -> None:
        if not self.dist.is_main:  # one metrics.jsonl, written by rank 0
            return
        with open(self.out / METRICS_FILE, "a") as f:
            f.write(json.dumps(row) + "\n")

    # ---- checkpoints: recalibrate, validate, save ----
    def evaluate(self) -> dict:
        """Validation losses and the collapse monitor (`validation.evaluate`), this process
        alone; {} when the validation split has no batch of two clips."""
        batches = validation.validation_batches(
            len(self.val_set), self.cfg.batch_size, self.cfg.val_batches
        )
        if not batches:
            return {}
        with ddp.local_batchnorm(self.model):  # this process alone: no collective
            return validation.evaluate(
                self.model, self.val_set, batches, self.loss_terms, self._sigreg_gen
            )

    def recalibrate(self) -> None:
        """Re-estimate BatchNorm running statistics on training batches with frozen weights."""
        with ddp.local_batchnorm(self.model):
            validation.recalibrate(
                self.model,
                self.train_set,
                min(self.cfg.bn_recalib_batches, self.steps_per_epoch),
                self.cfg.batch_size,
                self.cfg.seed,
                self.device,
                self._autocast(),
            )

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
            tensors = state.state_tensors(self.model, self.opt, rng)
            meta = state.state_metadata(self.step_count, asdict(self.cfg))
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
        """What config.json records beside the model: version, step, training config, the
        data it was trained on and the last evaluation."""
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
        """Resume: restore the state file, cut the metrics back to its step, and complete the
        model files if a kill left them one checkpoint older (see `state`)."""
        path = self.out / STATE_FILE
        tensors, meta = state.read_state(path)
        try:  # wrong keys, shapes or values: the file belongs to another model or is damaged
            self.step_count = state.restore(
                tensors, meta, self.model, self.opt, self.dist.rank, self.device, self._rank_seed()
            )
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
            raise UserError(
                f"{path} does not fit the run's model and optimiser "
                f"({str(e).strip().splitlines()[0][:120]}); start a new run"
            ) from None
        # The evaluation of the checkpoint we resume from (none if config.json is older).
        if (ev := state.saved_eval(self.out, self.step_count)) is not None:
            self.last_eval = ev
        if not self.dist.is_main:
            return
        kept = state.trim_metrics(self.out, self.step_count)
        if state.model_files_step(self.out) != self.step_count:
            # Killed after writing the state of this checkpoint but before its model.safetensors
            # and config.json: write them now from the restored (recalibrated) weights, with the
            # evaluation logged for this step. Otherwise a run resumed at its last step would end
            # with the model of the checkpoint before.
            if (ev := state.logged_eval(kept, self.step_count)) is not None:
                self.last_eval = ev
            save_model(self.out, self.model, self.val_set.action_stats, self.run_meta())

    # ---- the loop ----
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
        summary_path = self.out / SUMMARY_FILE
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
            "machine": machine_description(self.device),
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

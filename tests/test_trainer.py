"""The trainer learns, SIGReg prevents collapse, checkpoints resume exactly and survive NaN."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lewm_core.errors import UserError
from lewm_core.folders import METRICS_FILE
from lewm_core.training.config import TrainConfig, TrainingDiverged
from lewm_core.training.trainer import Trainer, lr_at
from lewm_core.world_model.checkpoint import load_model


def test_lr_schedule_warmup_then_cosine_to_zero():
    lrs = [lr_at(s, 100, 1.0, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lr_at(100, 100, 1.0, 10) == pytest.approx(0.0, abs=1e-12)


def test_training_learns_and_eval_mode_matches_train_mode(trained_run):
    """Validation prediction loss falls well below an untrained model's and below copying.

    Raw losses of differently scaled embeddings are not comparable, so the main check is on the
    scale-free ratio to the loss of copying the current latent.
    """
    ev = trained_run["trainer"].last_eval
    untrained = trained_run["untrained"]
    assert ev["pred_over_copy"] < 0.2 * untrained["pred_over_copy"]
    assert ev["val_pred_loss"] < 0.5 * untrained["val_pred_loss"]
    assert ev["val_pred_loss"] < 0.5 * ev["val_copy_loss"], "predictor must beat copying"
    # BatchNorm statistics recalibrated: eval mode as good as batch statistics.
    assert ev["val_pred_loss"] < 1.5 * ev["val_pred_loss_batchstats"]
    assert ev["emb_std_mean"] > 0.3


def test_sigreg_zero_collapses(tworoom_h5, trained_run, tmp_path):
    """lambda = 0: per-dim std falls by orders of magnitude; the predictor stops beating copy.
    (The healthy run's 300 steps at half its batch: the collapse needs the steps, not the batch.)"""
    cfg = TrainConfig.from_preset(
        "lab",
        tworoom_h5,
        str(tmp_path / "nosig"),
        max_steps=300,
        batch_size=16,
        checkpoint_every=1000,
        sigreg_weight=0.0,
    )
    trainer = Trainer(cfg)
    trainer.run()
    collapsed, healthy = trainer.last_eval, trained_run["trainer"].last_eval
    assert collapsed["emb_std_mean"] < healthy["emb_std_mean"] / 30
    assert collapsed["pred_over_copy"] > 3 * healthy["pred_over_copy"]


def test_run_folder_contents_and_metrics(trained_run):
    run = Path(trained_run["path"])
    for name in ("config.json", "model.safetensors", "trainer_state.safetensors", METRICS_FILE):
        assert (run / name).is_file(), name
    assert not list(run.glob(".*tmp-*")), "no temporaries left"
    rows = [json.loads(r) for r in (run / METRICS_FILE).read_text().splitlines()]
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == sorted(steps) and steps[-1] == 300
    keys = {"loss", "pred_loss", "sigreg", "lr", "grad_norm", "samples_per_s"}
    assert keys <= set(rows[-2])
    evals = [r for r in rows if "val_pred_loss" in r]
    assert {"emb_std_mean", "effective_rank", "val_copy_loss"} <= set(evals[-1])
    loaded = load_model(run)
    assert not loaded.model.training and loaded.env_name == "tworoom"


def _tiny(tworoom_h5: str, out: Path, **kw) -> TrainConfig:
    return TrainConfig.from_preset(
        "lab",
        tworoom_h5,
        str(out),
        batch_size=8,
        checkpoint_every=5,
        log_every=1,
        val_batches=1,
        bn_recalib_batches=2,
        **kw,
    )


def test_resume_is_exact(tworoom_h5, tmp_path):
    """10 steps straight == 6 steps, stop, resume for the rest (weights and metrics)."""
    straight = Trainer(_tiny(tworoom_h5, tmp_path / "a", max_steps=10))
    straight.run()
    first = Trainer(_tiny(tworoom_h5, tmp_path / "b", max_steps=10))
    for _ in range(6):
        first.step()
    first.save_checkpoint()
    first.step()  # logged after the checkpoint: must be dropped and redone on resume
    resumed = Trainer(_tiny(tworoom_h5, tmp_path / "b", max_steps=10), resume=True)
    assert resumed.step_count == 6
    resumed.run()
    for (k, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), k

    def losses(p):
        rows = (p / METRICS_FILE).read_text().splitlines()
        return [(r["step"], r["loss"]) for r in map(json.loads, rows) if "loss" in r]

    assert losses(tmp_path / "a") == losses(tmp_path / "b")


def test_init_from_starts_at_the_given_weights(trained_run, tworoom_h5, tmp_path):
    """--init-from: the new run starts exactly at the trained model's weights (its validation
    loss, not an untrained model's), trains on from there, records where it came from; a model
    of another architecture is refused before anything is trained."""
    tuned = Trainer(_tiny(tworoom_h5, tmp_path / "ft", max_steps=2, init_from=trained_run["path"]))
    source = load_model(trained_run["path"]).model.state_dict()
    for k, v in tuned.model.state_dict().items():
        assert torch.equal(v, source[k]), k
    start = tuned.evaluate()
    assert start["pred_over_copy"] < 0.5 * trained_run["untrained"]["pred_over_copy"]
    tuned.run()
    assert (
        json.loads((tmp_path / "ft" / "config.json").read_text())["train"]["init_from"]
        == (trained_run["path"])
    )
    other = _tiny(tworoom_h5, tmp_path / "bad", max_steps=2, init_from=trained_run["path"])
    other.model_overrides = {"pred_depth": 2}
    with pytest.raises(UserError, match="does not match .*--init-from"):
        Trainer(other)
    missing = _tiny(tworoom_h5, tmp_path / "none", max_steps=2, init_from=str(tmp_path / "nope"))
    with pytest.raises(UserError, match="does not exist"):
        Trainer(missing)


def test_rollout_loss_scores_the_models_own_rollout(trained_run, tworoom_h5, tmp_path):
    """--rollout-steps K: clips of max(history + 1, C + K) frames; the rollout loss is the
    error of the model's own K-step rollout from the first C frames (by hand here), reported
    in the step and validation metrics; 0 leaves the published loss and clips unchanged."""
    cfg = _tiny(tworoom_h5, tmp_path / "roll", max_steps=2, init_from=trained_run["path"])
    cfg.rollout_steps, cfg.rollout_context = 5, 1
    trainer = Trainer(cfg)
    history = trainer.model.cfg.history
    assert trainer.train_set.batch([0])["pixels"].shape[1] == 6 > history + 1
    batch = trainer.val_set.batch([0, 1, 2, 3])
    trainer.model.eval()
    with torch.no_grad():
        terms = trainer.loss_terms(batch)
        emb = trainer.model.encode(batch["pixels"])
        roll = trainer.model.rollout(emb[:, :1], batch["actions"][:, :5])
        teacher = trainer.model.predict(emb[:, :history], batch["actions"][:, :history])
    by_hand = torch.nn.functional.mse_loss(roll, emb[:, 1:6])
    assert float(terms["rollout_loss"]) == pytest.approx(float(by_hand), rel=1e-4)
    assert float(terms["pred_loss"]) == pytest.approx(
        float(torch.nn.functional.mse_loss(teacher, emb[:, 1 : history + 1])), rel=1e-4
    )
    # a trained model's own 5-block rollout drifts: worse than its one-step predictions
    assert float(terms["rollout_loss"]) > float(terms["pred_loss"])
    expected = float(
        terms["pred_loss"] + terms["rollout_loss"] + cfg.sigreg_weight * terms["sigreg"]
    )
    assert float(terms["loss"]) == pytest.approx(expected, rel=1e-5)
    trainer.run()
    rows = [json.loads(r) for r in (tmp_path / "roll" / METRICS_FILE).read_text().splitlines()]
    assert "rollout_loss" in rows[0] and any("val_rollout_loss" in r for r in rows)
    plain = Trainer(_tiny(tworoom_h5, tmp_path / "plain", max_steps=1))
    assert plain.train_set.batch([0])["pixels"].shape[1] == history + 1
    assert "rollout_loss" not in plain.loss_terms(plain.val_set.batch([0, 1]))
    with pytest.raises(UserError, match="--rollout-steps"):
        Trainer(_tiny(tworoom_h5, tmp_path / "bad", rollout_steps=-1))


def test_nan_stops_and_keeps_last_good_checkpoint(tworoom_h5, tmp_path):
    trainer = Trainer(_tiny(tworoom_h5, tmp_path / "nan", max_steps=50))
    for _ in range(5):
        trainer.step()
    trainer.save_checkpoint()
    before = (tmp_path / "nan" / "model.safetensors").read_bytes()
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="last good checkpoint \\(step 5\\)"):
        trainer.step()
    assert (tmp_path / "nan" / "model.safetensors").read_bytes() == before
    loaded = load_model(tmp_path / "nan")
    assert all(torch.isfinite(p).all() for p in loaded.model.parameters())


def test_existing_run_needs_resume(trained_run, tworoom_h5):
    with pytest.raises(UserError, match="--resume"):
        Trainer(TrainConfig.from_preset("lab", tworoom_h5, trained_run["path"]))


@pytest.mark.parametrize(
    "override, message",
    [
        ({"lr": float("nan")}, "--lr"),
        ({"batch_size": -3}, "--batch-size"),
        ({"sigreg_weight": -1.0}, "--sigreg-weight"),
        ({"epochs": 0}, "--epochs"),
    ],
)
def test_absurd_values_are_refused(tworoom_h5, tmp_path, override, message):
    with pytest.raises(UserError, match=message):
        Trainer(TrainConfig.from_preset("lab", tworoom_h5, str(tmp_path / "x"), **override))

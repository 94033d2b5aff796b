"""Multi-process training: 2 gloo processes on the CPU equal one process on the global batch.

The workers below run in processes started by torch.multiprocessing.spawn with torchrun's
environment variables set (RANK, WORLD_SIZE, ...), so they exercise the same detection and
process-group set-up as `torchrun`; the last test runs the real `torchrun` on the CLI.

Dropout is off (`dropout=0.0`) wherever one process is compared with two: two ranks draw dropout
masks for their halves of the batch from their own streams, which one process cannot reproduce.
The DDP resume test keeps dropout on (it compares two DDP runs, so the saved per-rank RNG states
matter). Everything else (SIGReg directions, data order, BatchNorm) is made to match exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from lewm_testing import free_port
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lewm_core.data.collect import CollectSpec, collect
from lewm_core.folders import METRICS_FILE
from lewm_core.training import distributed as ddp
from lewm_core.training.config import TrainConfig, TrainingDiverged
from lewm_core.training.trainer import Trainer
from lewm_core.world_model.checkpoint import load_model
from lewm_core.world_model.sigreg import sigreg

WORLD = 2
LAMBDA = 0.09
M = 64  # SIGReg projections (tests only: fewer than the default 1024)
TINY = dict(  # a small lab-style model: seconds per step on one thread
    cnn_channels=[8, 16, 32, 64],
    enc_width=32,
    latent_dim=32,
    proj_hidden=64,
    pred_depth=1,
    pred_heads=2,
    pred_head_dim=16,
    pred_mlp=64,
    action_mlp=32,
)


def _launch(rank: int, fn, port: int, args: tuple) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(WORLD),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(WORLD),
    )
    torch.set_num_threads(1)
    try:
        fn(rank, *args)
    finally:
        ddp.shutdown()
    ddp.exit_worker(0)  # as the CLI's torchrun workers do: skips gloo's racy teardown


def spawn(fn, *args) -> None:
    """Run fn(rank, *args) in WORLD fresh processes (a failure in any raises here)."""
    mp.spawn(_launch, args=(fn, free_port(), args), nprocs=WORLD, join=True)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- (a) global SIGReg


T, N, D, D_IN = 3, 16, 8, 6  # time steps, global batch, latent dim, input dim


def _problem() -> tuple[torch.Tensor, torch.Tensor, torch.nn.Module]:
    """Embeddings z (T, N, D), inputs x (N, T, D_IN) and a net with BatchNorm (same per rank)."""
    torch.manual_seed(0)
    z = torch.randn(T, N, D) * torch.linspace(0.5, 2.0, D) + 0.3
    x = torch.randn(N, T, D_IN)
    net = torch.nn.Sequential(
        torch.nn.Linear(D_IN, 32), torch.nn.BatchNorm1d(32), torch.nn.GELU(), torch.nn.Linear(32, D)
    )
    return z, x, net


def _net_loss(net: torch.nn.Module, x: torch.Tensor, reg) -> tuple[torch.Tensor, torch.Tensor]:
    """Prediction-like MSE over this batch + lambda * SIGReg; x (n, T, D_IN) -> (loss, mse)."""
    emb = net(x.reshape(-1, D_IN)).reshape(x.shape[0], T, D)  # BatchNorm over n * T rows
    mse = F.mse_loss(emb[:, 1:], 0.5 * emb[:, :-1].detach())
    return mse + LAMBDA * reg(emb.transpose(0, 1), M, generator=_gen(6)), mse


def _sigreg_part(rank: int, out: str) -> None:
    z_full, x_full, net = _problem()
    n = N // WORLD
    shard = slice(rank * n, (rank + 1) * n)
    # Embeddings alone: every rank computes the same statistic of the gathered batch.
    z = z_full[:, shard].clone().requires_grad_(True)
    s = ddp.global_sigreg(z, M, generator=_gen(5))
    s.backward()
    # Through a DDP model with global BatchNorm: the per-rank loss needs no extra factor.
    ddp.convert_batchnorm(net)
    model = torch.nn.parallel.DistributedDataParallel(net)
    loss, mse = _net_loss(model, x_full[shard], ddp.global_sigreg)
    loss.backward()
    global_mse = ddp.all_reduce_sum_(mse.detach().clone()) / WORLD
    tensors = {
        "s": s.detach(),
        "z_grad": z.grad,
        "loss_global": global_mse + (loss - mse).detach(),
        **{f"grad.{k}": p.grad for k, p in net.named_parameters()},
        **{f"buf.{k}": b for k, b in net.named_buffers()},
    }
    save_file({k: v.contiguous() for k, v in tensors.items()}, f"{out}/rank{rank}.safetensors")


def test_global_sigreg_and_gradients_match_one_process(ddp_runs):
    z_full, x_full, net = _problem()
    z = z_full.clone().requires_grad_(True)
    s = sigreg(z, M, generator=_gen(5))
    s.backward()
    loss, _ = _net_loss(net, x_full, sigreg)
    loss.backward()
    n = N // WORLD
    for rank in range(WORLD):
        got = load_file(str(ddp_runs / f"rank{rank}.safetensors"))
        torch.testing.assert_close(got["s"], s.detach(), rtol=1e-5, atol=1e-6)
        # Every rank backpropagates the same S: the all-gather's backward sums their gradients,
        # so one rank holds WORLD x dS/dz of its shard (DDP's mean over ranks divides it again).
        ref = z.grad[:, rank * n : (rank + 1) * n]
        torch.testing.assert_close(got["z_grad"] / WORLD, ref, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(got["loss_global"], loss.detach(), rtol=1e-5, atol=1e-6)
        for k, p in net.named_parameters():  # after DDP's averaging: the one-process gradient
            torch.testing.assert_close(got[f"grad.{k}"], p.grad, rtol=1e-4, atol=1e-6, msg=k)
        for k, b in net.named_buffers():  # global BatchNorm: same running statistics
            torch.testing.assert_close(got[f"buf.{k}"], b, rtol=1e-5, atol=1e-6, msg=k)


# --------------------------------------------------------------------------- (b) the real Trainer


@pytest.fixture(scope="module")
def tiny_h5(tmp_path_factory) -> str:
    """12 Two-Room episodes of 40 steps at 32 px."""
    out = tmp_path_factory.mktemp("ddp-data") / "tiny.h5"
    collect(CollectSpec("tworoom", episodes=12, steps=40, resolution=32, seed=0), out)
    return str(out)


def _cfg(data: str, out: Path, dropout: float = 0.0, **kw) -> TrainConfig:
    return TrainConfig.from_preset(
        "lab",
        data,
        str(out),
        batch_size=8,
        log_every=1,
        checkpoint_every=1000,
        val_batches=1,
        bn_recalib_batches=2,
        sigreg_projections=M,
        threads=1,
        model_overrides={**TINY, "dropout": dropout},
        **kw,
    )


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _worker(rank: int, data: str, root: str) -> None:
    """Everything the 2-process tests check, in one spawn (starting processes is the slow part)."""
    ddp.setup(torch.device("cpu"))
    _sigreg_part(rank, root)
    root_p = Path(root)
    result: dict = {}
    # One process vs two on the same global batches: two steps, then a checkpoint.
    tr = Trainer(_cfg(data, root_p / "ddp", max_steps=2))
    m1 = tr.step()
    grads = {f"grad.{k}": p.grad.clone() for k, p in tr.model.named_parameters()}
    m2 = tr.step()
    tr.save_checkpoint()
    result["metrics"] = [m1, m2]
    result["shard"] = tr.rank_batch_indices(0).tolist()
    save_file({**grads, **_params(tr.model)}, f"{root}/step-rank{rank}.safetensors")

    # Exact resume under DDP (dropout on: the per-rank RNG states must be restored), and the
    # prefetching DataLoader (2 forked workers) gives the same training as in-line loading.
    straight = Trainer(_cfg(data, root_p / "straight", 0.1, max_steps=4, loader_workers=2))
    straight.run()
    first = Trainer(_cfg(data, root_p / "resumed", 0.1, max_steps=4))
    first.step()
    first.step()
    first.save_checkpoint()
    first.step()  # logged after the checkpoint: dropped and redone on resume
    resumed = Trainer(_cfg(data, root_p / "resumed", 0.1, max_steps=4), resume=True)
    result["resumed_from"] = resumed.step_count
    resumed.run()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    result["resume_equal"] = all(torch.equal(a[k], b[k]) for k in a)

    # A stop asked of rank 1 alone (as Ctrl-C / SIGTERM do under torchrun) stops every rank
    # after the same step, with a checkpoint.
    stopper = Trainer(_cfg(data, root_p / "stopped", max_steps=10))

    def ask(m: dict) -> None:
        if rank == 1 and m["step"] == 2:
            stopper.request_stop()

    result["stopped"] = stopper.run(ask)

    # A NaN on one rank only stops both ranks at the same step (no hang).
    nan = Trainer(_cfg(data, root_p / "nan", max_steps=10))
    nan.step()
    if rank == 1:
        with torch.no_grad():
            next(nan.model.encoder.parameters()).fill_(float("nan"))
    try:
        nan.step()
        result["nan"] = "no error"
    except TrainingDiverged as e:
        result["nan"] = str(e)
    (root_p / f"result-rank{rank}.json").write_text(json.dumps(result))


@pytest.fixture(scope="module")
def ddp_runs(tiny_h5, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp-runs")
    spawn(_worker, tiny_h5, str(root))
    return root


def _result(root: Path, rank: int) -> dict:
    return json.loads((root / f"result-rank{rank}.json").read_text())


def test_ddp_steps_equal_one_process_on_the_global_batch(ddp_runs, tiny_h5, tmp_path):
    """Two DDP steps (dropout off) == two single-process steps: metrics, gradients, weights."""
    one = Trainer(_cfg(tiny_h5, tmp_path / "one", max_steps=2))
    metrics = [one.step()]
    grads = {k: p.grad.clone() for k, p in one.model.named_parameters()}
    metrics.append(one.step())
    one.save_checkpoint()
    lr = one.cfg.lr
    shards = [_result(ddp_runs, r)["shard"] for r in range(WORLD)]
    assert shards[0] + shards[1] == one.batch_indices(0).tolist(), "shards = the global batch"
    for rank in range(WORLD):
        res = _result(ddp_runs, rank)
        for got, ref in zip(res["metrics"], metrics, strict=True):
            for k in ("loss", "pred_loss", "sigreg", "grad_norm"):
                assert got[k] == pytest.approx(ref[k], rel=1e-4), (rank, k)
            assert got["step"] == ref["step"] and got["lr"] == ref["lr"]
        state = load_file(str(ddp_runs / f"step-rank{rank}.safetensors"))
        for k, g in grads.items():
            torch.testing.assert_close(state[f"grad.{k}"], g, rtol=1e-4, atol=1e-6, msg=k)
        for k, v in _params(one.model).items():
            if k.endswith("num_batches_tracked"):
                assert torch.equal(state[k], v)
            elif k in grads and grads[k].abs().max() < 1e-6:
                # Biases in front of a normalisation: the true gradient is 0 and what is left
                # is rounding noise, which Adam scales up to steps of about lr either way.
                assert (state[k] - v).abs().max() <= 2 * 2 * lr, k
            elif k.endswith("running_mean"):
                # recalibrated means move with those noisy biases in front (measured 2.4 lr);
                # BatchNorm subtracts them again
                assert (state[k] - v).abs().max() <= 10 * lr, k
            else:  # Adam moves a weight by about lr per step: compare on that scale
                atol = 0.1 * lr if k in grads else 1e-5
                torch.testing.assert_close(state[k], v, rtol=1e-4, atol=atol, msg=k)
    # Rank 0's checkpoint (recalibrated BatchNorm, evaluation) == the single process's.
    ref = load_model(tmp_path / "one").model.state_dict()
    got = load_model(ddp_runs / "ddp").model.state_dict()
    for k in ref:
        torch.testing.assert_close(got[k], state[k], msg=k)  # what rank 0 had in memory
    ev_ddp = json.loads((ddp_runs / "ddp" / "config.json").read_text())["eval"]
    ev_one = json.loads((tmp_path / "one" / "config.json").read_text())["eval"]
    assert ev_ddp["val_pred_loss"] == pytest.approx(ev_one["val_pred_loss"], rel=1e-3)


def _loss_rows(run: Path) -> list[tuple[int, float]]:
    rows = map(json.loads, (run / METRICS_FILE).read_text().splitlines())
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def test_ddp_resume_is_exact_and_metrics_written_once(ddp_runs):
    for rank in range(WORLD):
        res = _result(ddp_runs, rank)
        assert res["resumed_from"] == 2 and res["resume_equal"], rank
    straight, resumed = _loss_rows(ddp_runs / "straight"), _loss_rows(ddp_runs / "resumed")
    assert [s for s, _ in straight] == [1, 2, 3, 4]  # rank 0 alone wrote them, once each
    assert resumed == straight
    with safe_open(str(ddp_runs / "resumed" / "trainer_state.safetensors"), "pt") as f:
        assert {"rng.torch", "rng.torch.rank1"} <= set(f.keys())


def test_nan_on_one_rank_stops_every_rank(ddp_runs):
    for rank in range(WORLD):
        assert "training stopped at step 2: loss became nan" in _result(ddp_runs, rank)["nan"]


def test_stop_asked_of_one_rank_stops_all_after_the_same_step(ddp_runs):
    summaries = [_result(ddp_runs, rank)["stopped"] for rank in range(WORLD)]
    assert summaries[0] == summaries[1], "every rank returns rank 0's summary"
    assert summaries[0]["steps"] == 3 and summaries[0]["stopped_early"]  # agreed in step 3
    with safe_open(str(ddp_runs / "stopped" / "trainer_state.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["trainer"])["step"] == 3


# --------------------------------------------------------------------------- (c) torchrun + CLI


def test_torchrun_cli_smoke(tiny_h5, tmp_path):
    """`torchrun --nproc_per_node 2 -m lewm_core train` writes one loadable run, steps once."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "lewm_core", "train", "--data", tiny_h5, "--out", str(out), "--preset", "lab"]
    cmd += ["--max-steps", "4", "--batch-size", "8", "--checkpoint-every", "2", "--threads", "1"]
    cmd += ["--device", "cpu", "--quiet", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    json_lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(json_lines) == 1, proc.stdout  # rank 0 prints, rank 1 does not
    summary = json.loads(json_lines[0])
    assert summary["steps"] == 4 and summary["world_size"] == 2
    loaded = load_model(out)
    assert not loaded.model.training
    rows = [json.loads(r) for r in (out / METRICS_FILE).read_text().splitlines()]
    train_steps = [r["step"] for r in rows if "loss" in r]
    eval_steps = [r["step"] for r in rows if "val_pred_loss" in r]
    assert train_steps == sorted(set(train_steps)) and train_steps[0] == 1
    assert eval_steps == [2, 4]
    with safe_open(str(out / "trainer_state.safetensors"), "pt") as f:
        assert "rng.torch.rank1" in f.keys()
    assert not list(out.glob(".*tmp-*"))

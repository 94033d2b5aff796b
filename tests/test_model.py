"""LeWM model and ModelConfig tests (CPU, small batches)."""

import copy
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from lewm_core.world_model.config import PRESETS, ModelConfig
from lewm_core.world_model.cpu_kernels import (
    bf16_probe,
    forced_plain,
    fused_linear_gelu,
    fused_linear_gelu_status,
)
from lewm_core.world_model.fast_rollout import linear_gelu, modulations
from lewm_core.world_model.model import LeWM, parameter_counts, recalibrate_batchnorm


def pixels(b, t, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, t, size, size, 3), generator=g, dtype=torch.uint8)


def actions(b, t, cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, cfg.action_block_dim, generator=g)


def make(name="lab", **kw):
    torch.manual_seed(0)
    return LeWM(ModelConfig.preset(name, **kw))


def randomise_adaln(model):
    """Give the zero-initialised AdaLN layers non-zero weights so actions and blocks matter."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for block in model.predictor.blocks:
            lin = block.adaln[1]
            lin.weight.copy_(0.05 * torch.randn(lin.weight.shape, generator=g))
            lin.bias.copy_(0.3 * torch.randn(lin.bias.shape, generator=g))


# --------------------------------------------------------------------------- parameter counts


def test_paper_parameter_count_exact():
    model = make("paper", action_dim=2)
    counts = parameter_counts(model)
    assert counts == {
        "params_total": 18_034_478,
        "params_encoder": 5_501_376,
        "params_predictor": 10_791_360,
        "params_projector": 792_768,
        "params_action_encoder": 156_206,
        "params_pred_proj": 792_768,
    }


def test_paper_forward_tiny_batch():
    model = make("paper").eval()
    cfg = model.cfg
    with torch.inference_mode():
        out = model(pixels(1, 2, 224), actions(1, 2, cfg))
    assert out["emb"].shape == (1, 2, 192)
    assert out["pred"].shape == (1, 1, 192)


# --------------------------------------------------------------------------- shapes, gradients


@pytest.mark.parametrize("name", ["lab", "lab-vit"])
def test_lab_forward_backward_shapes(name):
    model = make(name)
    cfg = model.cfg
    b, t = 4, cfg.history + 1
    out = model(pixels(b, t, cfg.image_size), actions(b, t, cfg))
    assert out["emb"].shape == (b, t, cfg.latent_dim)
    assert out["pred"].shape == (b, t - 1, cfg.latent_dim)
    loss = (out["pred"] - out["emb"][:, 1:]).pow(2).mean() + out["emb"].pow(2).mean()
    loss.backward()
    for part in (model.encoder, model.projector, model.pred_proj):
        for p in part.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()
    # with AdaLN-zero the gates get gradients even though the branches are off at init
    for block in model.predictor.blocks:
        assert block.adaln[1].weight.grad.abs().sum() > 0


def test_encode_single_frames_and_size_check():
    model = make().eval()
    s = model.cfg.image_size
    x = pixels(3, 2, s)
    with torch.no_grad():
        z_clip = model.encode(x)
        z_frames = model.encode(x[:, 1])
        z_float = model.encode(x[:, 1].float() / 255.0)
    assert z_clip.shape == (3, 2, model.cfg.latent_dim)
    assert z_frames.shape == (3, model.cfg.latent_dim)
    torch.testing.assert_close(z_frames, z_clip[:, 1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(z_float, z_frames)
    with pytest.raises(ValueError, match="image_size"):
        model.encode(pixels(1, 1, s * 2))


def test_encode_actions_shape_and_check():
    model = make()
    cfg = model.cfg
    assert model.encode_actions(actions(2, 3, cfg)).shape == (2, 3, cfg.latent_dim)
    with pytest.raises(ValueError, match="action blocks"):
        model.encode_actions(torch.randn(2, 3, cfg.action_dim))


def test_predict_rejects_too_long_history():
    model = make()
    cfg = model.cfg
    z = torch.randn(2, cfg.history + 1, cfg.latent_dim)
    with pytest.raises(ValueError, match="history"):
        model.predict(z, actions(2, cfg.history + 1, cfg))


def test_predict_accepts_action_embeddings():
    model = make().eval()
    randomise_adaln(model)
    cfg = model.cfg
    z, a = torch.randn(2, 3, cfg.latent_dim), actions(2, 3, cfg)
    with torch.no_grad():
        p1 = model.predict(z, a)
        p2 = model.predict(z, action_emb=model.encode_actions(a))
    torch.testing.assert_close(p1, p2)


def test_bf16_autocast_forward():
    model = make()
    cfg = model.cfg
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(pixels(4, 4, cfg.image_size), actions(4, 4, cfg))
    assert torch.isfinite(out["pred"].float()).all()
    assert out["pred"].shape == (4, 3, cfg.latent_dim)


# --------------------------------------------------------------------------- AdaLN-zero, causality


def test_adaln_zero_init_actions_have_no_effect():
    model = make().eval()
    cfg = model.cfg
    for block in model.predictor.blocks:
        assert torch.count_nonzero(block.adaln[1].weight) == 0
        assert torch.count_nonzero(block.adaln[1].bias) == 0
    z = torch.randn(2, 3, cfg.latent_dim)
    with torch.no_grad():
        p1 = model.predict(z, actions(2, 3, cfg, seed=1))
        p2 = model.predict(z, actions(2, 3, cfg, seed=2))
    torch.testing.assert_close(p1, p2)


def test_predictor_is_causal():
    model = make().eval()
    randomise_adaln(model)
    cfg = model.cfg
    px, act = pixels(2, 4, cfg.image_size), actions(2, 4, cfg)
    with torch.no_grad():
        base = model(px, act)["pred"]
        px2 = px.clone()
        px2[:, 2] = 255 - px2[:, 2]  # change frame 2: only predictions 2.. may change
        pred_px = model(px2, act)["pred"]
        act2 = act.clone()
        act2[:, 1] += 3.0  # change action 1: only predictions 1.. may change
        pred_act = model(px, act2)["pred"]
    torch.testing.assert_close(pred_px[:, :2], base[:, :2])
    assert not torch.allclose(pred_px[:, 2], base[:, 2])
    torch.testing.assert_close(pred_act[:, :1], base[:, :1])
    assert not torch.allclose(pred_act[:, 1], base[:, 1])


# --------------------------------------------------------------------------- rollout


def manual_rollout(model, z, act, horizon):
    hist = model.cfg.history
    seq = list(z.unbind(1))
    out = []
    for _ in range(horizon):
        n = len(seq)
        start = max(0, n - hist)
        pred = model.predict(torch.stack(seq[start:], 1), act[:, start:n])[:, -1]
        seq.append(pred)
        out.append(pred)
    return torch.stack(out, 1)


@pytest.mark.parametrize("t0", [1, 2, 4])
def test_rollout_matches_step_by_step_predict(t0):
    model = make().eval()
    randomise_adaln(model)
    cfg = model.cfg
    horizon = 5
    z = torch.randn(3, t0, cfg.latent_dim)
    act = actions(3, t0 - 1 + horizon, cfg)
    with torch.no_grad():
        got = model.rollout(z, act)
        expected = manual_rollout(model, z, act, horizon)
    assert got.shape == (3, horizon, cfg.latent_dim)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("context", [1, 3])
def test_forward_rollout_feeds_its_own_predictions_back(context):
    """forward(rollout_steps=K): teacher forcing on the first history + 1 frames of a longer
    clip, and the K latents after the first `context` predicted from those frames alone, as
    `rollout` (planning) predicts them; a clip too short for the rollout is refused."""
    model = make().eval()
    randomise_adaln(model)
    cfg = model.cfg
    k = 4
    frames = max(cfg.history + 1, context + k)
    pixels = torch.randint(
        0, 256, (2, frames, cfg.image_size, cfg.image_size, 3), dtype=torch.uint8
    )
    act = actions(2, frames, cfg)
    with torch.no_grad():
        out = model(pixels, act, rollout_steps=k, rollout_context=context)
        emb = model.encode(pixels)
        teacher = model.predict(emb[:, : cfg.history], act[:, : cfg.history])
        expected = manual_rollout(model, emb[:, :context], act[:, : context - 1 + k], k)
    assert out["pred"].shape == (2, cfg.history, cfg.latent_dim)
    torch.testing.assert_close(out["pred"], teacher)
    assert out["rollout"].shape == (2, k, cfg.latent_dim)
    torch.testing.assert_close(out["rollout"], expected, rtol=1e-4, atol=1e-5)
    # after the first step the rollout differs from teacher forcing: its inputs are predictions
    if context + 1 <= cfg.history:
        assert not torch.allclose(out["rollout"][:, 1], teacher[:, context])
    with pytest.raises(ValueError, match="needs clips of at least"):
        model(pixels, act, rollout_steps=frames, rollout_context=context)


@pytest.mark.parametrize("preset", ["lab", "paper"])
@pytest.mark.parametrize("t0", [1, 3])
def test_fast_rollout_equals_naive(preset, t0):
    """The fast mode (cache, newest-token last layer, written-out attention) computes the
    naive mode's numbers, for the paper's predictor shape too (16 heads x 64)."""
    overrides = {"image_size": 28, "patch_size": 14, "enc_depth": 1} if preset == "paper" else {}
    model = make(preset, **overrides).eval()
    randomise_adaln(model)
    cfg = model.cfg
    z = torch.randn(1, t0, cfg.latent_dim)
    act = actions(64, t0 - 1 + 5, cfg)
    with torch.inference_mode():
        fast = model.rollout(z, act, mode="fast")
        naive = model.rollout(z, act, mode="naive")
    assert fast.shape == naive.shape == (64, 5, cfg.latent_dim)
    torch.testing.assert_close(fast, naive, rtol=1e-4, atol=1e-4)


def test_bfloat16_fast_rollout_stays_close_to_float32():
    _needs_bf16()
    model = make().eval()
    randomise_adaln(model)
    cfg = model.cfg
    z = torch.randn(1, 1, cfg.latent_dim)
    act = actions(64, 5, cfg)
    with torch.inference_mode():
        ref = model.rollout(z, act, mode="naive")
        low = model.to(torch.bfloat16).rollout(z.bfloat16(), act.bfloat16(), mode="fast")
    err = (low.float() - ref).norm(dim=-1) / ref.norm(dim=-1)
    assert float(err.max()) < 0.05, f"bfloat16 relative error {float(err.max()):.3f}"


def test_stacked_modulations_follow_weight_updates():
    """`fast_rollout.modulations` (one stacked matmul, cached weights) equals each block's own
    AdaLN + 1 on the scales, and again after the weights change (the cache is rebuilt)."""
    model = make().eval()
    randomise_adaln(model)
    pred, w = model.predictor, model.cfg.pred_width
    c = torch.randn(4, 5, w)

    def reference(blk):
        mod = blk.adaln(c)
        mod[..., w : 2 * w] += 1.0
        mod[..., 4 * w : 5 * w] += 1.0
        return mod

    with torch.no_grad():
        for got, blk in zip(modulations(pred, c), pred.blocks, strict=True):
            torch.testing.assert_close(got, reference(blk), rtol=1e-5, atol=1e-5)
        for blk in pred.blocks:  # as an optimizer step would: in place
            blk.adaln[1].weight.add_(0.5)
            blk.adaln[1].bias.sub_(0.25)
        for got, blk in zip(modulations(pred, c), pred.blocks, strict=True):
            torch.testing.assert_close(got, reference(blk), rtol=1e-5, atol=1e-5)


def _needs_bf16() -> None:
    """Skip, with the probe's reason, where bfloat16 matmuls do not run on this CPU."""
    probe = bf16_probe()
    if not probe.runs:
        pytest.skip(f"bfloat16 does not run here: {probe.reason}")


def test_linear_gelu_plain_path_matches_the_fused_one():
    """The plain path (fused op refused) and the probed path give the same numbers: exactly the
    plain ones where the probe turned the fused op down, the fused op's own where it did not."""
    _needs_bf16()
    torch.manual_seed(0)
    layer = torch.nn.Linear(192, 768)
    x = torch.randn(300, 192)
    low_layer, low_x = copy.deepcopy(layer).bfloat16(), x.bfloat16()
    with torch.no_grad():
        ref = F.gelu(layer(x))
        torch.testing.assert_close(linear_gelu(x, layer), ref, rtol=0, atol=0)  # float32: plain
        plain = linear_gelu(low_x, low_layer, allow_fused=False)
        torch.testing.assert_close(plain, F.gelu(low_layer(low_x)), rtol=0, atol=0)
        probed = linear_gelu(low_x, low_layer)
        if fused_linear_gelu_status(torch.bfloat16).usable:
            fused = fused_linear_gelu(low_x, low_layer.weight, low_layer.bias)
            torch.testing.assert_close(probed, fused, rtol=0, atol=0)
        else:
            torch.testing.assert_close(probed, plain, rtol=0, atol=0)
    for low in (plain, probed):
        err = (low.float() - ref).abs().max() / ref.abs().max()
        assert float(err) < 0.02, f"bfloat16 linear+GELU relative error {float(err):.4f}"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fused_probe_turns_down_an_op_that_fails(dtype):
    """The probe says usable exactly where the raw oneDNN op runs in `dtype` and matches the plain
    numbers (float16 fails on CPUs without AVX512-FP16, as bfloat16 does on AVX2-only CPUs)."""
    status = fused_linear_gelu_status(dtype)
    torch.manual_seed(1)
    x, layer = torch.randn(4, 5, 64).to(dtype), torch.nn.Linear(64, 96).to(dtype)
    try:
        with torch.no_grad():
            got = torch.ops.mkldnn._linear_pointwise(
                x, layer.weight, layer.bias, "gelu", [], "none"
            )
            ref = F.gelu(F.linear(x.float(), layer.weight.float(), layer.bias.float()))
        runs = bool((got.float() - ref).abs().max() <= 0.05 * ref.abs().max())
    except (RuntimeError, AttributeError):
        runs = False
    assert status.usable == (runs and not forced_plain()), status.reason
    if not runs:
        assert status.reason and "matched" not in status.reason


PLAIN_ROLLOUT_SCRIPT = """
import sys, torch, torch.nn.functional as F
from safetensors.torch import save_file
from test_model import actions, make, randomise_adaln
from lewm_core.world_model.cpu_kernels import fused_linear_gelu_status
from lewm_core.world_model.fast_rollout import linear_gelu
status = fused_linear_gelu_status(torch.bfloat16)
try:
    layer = torch.nn.Linear(32, 48).bfloat16()
    x = torch.randn(3, 32).bfloat16()
    torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "gelu", [], "none")
    raw_op_runs = True
except (RuntimeError, AttributeError):
    raw_op_runs = False
if not status.usable:  # the plain path, exactly
    with torch.no_grad():
        assert torch.equal(linear_gelu(x, layer), F.gelu(layer(x)))
model = make().eval()
randomise_adaln(model)
z = torch.randn(1, 1, model.cfg.latent_dim, generator=torch.Generator().manual_seed(4))
act = actions(64, 5, model.cfg)
with torch.inference_mode():
    low = model.to(torch.bfloat16).rollout(z.bfloat16(), act.bfloat16(), mode="fast")
save_file({"rollout": low.float()}, sys.argv[1])
print("FUSED", status.usable, "RAW_OP_RUNS", raw_op_runs, status.reason)
"""


def _plain_rollout(tmp_path, env_overrides: dict[str, str]) -> tuple[torch.Tensor, str]:
    """The bfloat16 fast rollout of `make()` computed in a fresh process under `env_overrides`,
    and what that process printed."""
    out = tmp_path / "rollout.safetensors"
    env = {k: v for k, v in os.environ.items() if k != "LEWM_CPU_KERNELS"}
    env.update(env_overrides, PYTHONPATH=os.path.dirname(__file__))
    proc = subprocess.run(
        [sys.executable, "-c", PLAIN_ROLLOUT_SCRIPT, str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return load_file(out)["rollout"], proc.stdout


def _bf16_rollout_reference() -> tuple[torch.Tensor, torch.Tensor]:
    """float32 naive and bfloat16 fast (probed kernels) rollouts of the subprocess's inputs."""
    model = make().eval()
    randomise_adaln(model)
    z = torch.randn(1, 1, model.cfg.latent_dim, generator=torch.Generator().manual_seed(4))
    act = actions(64, 5, model.cfg)
    with torch.inference_mode():
        ref = model.rollout(z, act, mode="naive")
        low = model.to(torch.bfloat16).rollout(z.bfloat16(), act.bfloat16(), mode="fast")
    return ref, low.float()


def _relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float(((got - ref).norm(dim=-1) / ref.norm(dim=-1)).max())


def test_forced_plain_kernels_roll_out_the_same_numbers(tmp_path):
    """LEWM_CPU_KERNELS=plain (the fallback, forced): the fused op is refused and the bfloat16
    rollout equals this process's (fused where the probe allows) to bfloat16 rounding."""
    _needs_bf16()
    plain, printed = _plain_rollout(tmp_path, {"LEWM_CPU_KERNELS": "plain"})
    assert "FUSED False" in printed and "LEWM_CPU_KERNELS=plain" in printed, printed
    ref, probed = _bf16_rollout_reference()
    assert _relative_error(plain, ref) < 0.05 and _relative_error(probed, ref) < 0.05
    if fused_linear_gelu_status(torch.bfloat16).usable:
        assert _relative_error(plain, probed) < 0.05
    else:  # both processes took the plain path: the same numbers, bit for bit
        torch.testing.assert_close(plain, probed, rtol=0, atol=0)


def test_bfloat16_rolls_out_where_onednn_lacks_the_fused_kernel(tmp_path):
    """The failure of an AVX2-only CPU, reproduced by capping oneDNN at AVX2 (x86): the fused
    op raises there, the probe turns it down, and the bfloat16 rollout runs the plain path."""
    _needs_bf16()
    low, printed = _plain_rollout(tmp_path, {"ONEDNN_MAX_CPU_ISA": "AVX2"})
    if "RAW_OP_RUNS True" in printed:
        pytest.skip(f"oneDNN capped at AVX2 still runs the fused op here: {printed.strip()}")
    assert "FUSED False" in printed and "does not run here" in printed, printed
    ref, _ = _bf16_rollout_reference()
    assert _relative_error(low, ref) < 0.05


def test_rollout_broadcasts_context_under_inference_mode():
    model = make().eval()
    randomise_adaln(model)
    cfg = model.cfg
    z = torch.randn(1, 1, cfg.latent_dim)
    act = actions(300, 5, cfg)
    with torch.inference_mode():
        got = model.rollout(z, act)
        ref = model.rollout(z.expand(300, -1, -1).clone(), act)
    assert got.shape == (300, 5, cfg.latent_dim)
    torch.testing.assert_close(got, ref)
    with pytest.raises(ValueError):
        model.rollout(torch.randn(2, 1, cfg.latent_dim), act)
    with pytest.raises(ValueError):
        model.rollout(torch.randn(1, 3, cfg.latent_dim), act[:, :2])


# ------------------------------------------------------------------- BatchNorm recalibration


def test_recalibrate_batchnorm_changes_running_stats():
    model = make()
    cfg = model.cfg
    model.train()
    bn = model.projector[1]
    before_mean = bn.running_mean.clone()
    batches = [(pixels(8, 4, cfg.image_size, seed=i), actions(8, 4, cfg, seed=i)) for i in range(3)]
    used = recalibrate_batchnorm(model, iter(batches), num_batches=2)
    assert used == 2
    assert not torch.allclose(bn.running_mean, before_mean)
    assert bn.momentum == 0.1 and model.training
    assert bn.num_batches_tracked.item() == 2
    # cumulative average: equals the mean of the per-batch statistics of the frozen model
    model.eval()
    with torch.no_grad():
        feats = [
            model.projector[0](model.encoder(_norm(model, px))).mean(0) for px, _ in batches[:2]
        ]
    torch.testing.assert_close(bn.running_mean, torch.stack(feats).mean(0), rtol=1e-4, atol=1e-5)


def _norm(model, px):
    s = model.cfg.image_size
    x = px.reshape(-1, s, s, 3).permute(0, 3, 1, 2).float() / 255.0
    return (x - model.pixel_mean) / model.pixel_std


# --------------------------------------------------------------------------- config


def test_presets_and_defaults():
    assert PRESETS == ("paper", "lab", "lab-vit")
    assert ModelConfig.preset("paper") == ModelConfig()
    lab = ModelConfig.preset("lab")
    assert (lab.image_size, lab.encoder, lab.proj_hidden, lab.pred_depth) == (64, "cnn", 512, 4)
    vit = ModelConfig.preset("lab-vit", dropout=0.0)
    assert (vit.encoder, vit.patch_size, vit.enc_width, vit.dropout) == ("vit", 8, 128, 0.0)
    assert ModelConfig.preset("lab", latent_dim=128).pred_width == 128
    with pytest.raises(ValueError, match="lab-vit"):
        ModelConfig.preset("huge")


@pytest.mark.parametrize("name", PRESETS)
def test_config_json_round_trip(name):
    cfg = ModelConfig.preset(name, action_dim=5)
    d = json.loads(json.dumps(cfg.to_dict()))
    back = ModelConfig.from_dict(d)
    assert back == cfg
    assert isinstance(back.cnn_channels, tuple)


def test_from_dict_unknown_key():
    with pytest.raises(ValueError, match="unknown ModelConfig field"):
        ModelConfig.from_dict({"latent_dim": 192, "bogus": 1})


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"pred_width": 128}, "pred_width"),
        ({"image_size": 100}, "patch_size"),
        ({"encoder": "cnn", "cnn_channels": (32, 0)}, "cnn_channels"),
        ({"encoder": "resnet"}, "encoder"),
        ({"dropout": 1.5}, "dropout"),
        ({"enc_heads": 5}, "enc_heads"),
        ({"encoder": "cnn", "cnn_channels": ()}, "cnn_channels"),
    ],
)
def test_config_validation(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ModelConfig(**kwargs)


def test_state_dict_round_trip():
    model = make()
    other = LeWM(ModelConfig.from_dict(model.cfg.to_dict()))
    other.load_state_dict(model.state_dict())
    for (k1, v1), (k2, v2) in zip(
        model.state_dict().items(), other.state_dict().items(), strict=True
    ):
        assert k1 == k2 and torch.equal(v1, v2)


def test_parse_arch_override_types_each_field():
    from lewm_core.world_model.config import parse_arch_override

    assert parse_arch_override("pred_depth=6") == ("pred_depth", 6)
    assert parse_arch_override(" dropout = 0.25 ") == ("dropout", 0.25)
    assert parse_arch_override("encoder=vit") == ("encoder", "vit")
    assert parse_arch_override("cnn_channels=16,32,64,128") == ("cnn_channels", (16, 32, 64, 128))
    cfg = ModelConfig.preset("lab", **dict([parse_arch_override("cnn_channels=16,32,64,128")]))
    assert cfg.cnn_channels == (16, 32, 64, 128)
    for bad, needle in [
        ("pred_depth", "KEY=VALUE"),
        ("=3", "KEY=VALUE"),
        ("pred_depth=", "KEY=VALUE"),
        ("pred_depth=1.5", "takes int"),
        ("cnn_channels=a,b", "comma-separated integers"),
        ("action_dim=4", "set by the dataset"),
        ("nope=1", "valid: encoder"),
    ]:
        with pytest.raises(ValueError, match=needle):
            parse_arch_override(bad)

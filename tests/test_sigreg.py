"""SIGReg / Epps-Pulley tests (LeJEPA style, fixed seeds)."""

import math

import pytest
import torch

from lewm_core.world_model.sigreg import SIGReg, epps_pulley, random_directions, sigreg

D = 64
N = 256
M = 256  # projections: fewer than the default 1024 to keep the tests fast


def gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def stat(z: torch.Tensor, seed: int = 1) -> float:
    return sigreg(z, num_projections=M, generator=gen(seed)).item()


@pytest.fixture(scope="module")
def gaussian_value() -> float:
    torch.manual_seed(0)
    return stat(torch.randn(N, D))


def test_epps_pulley_matches_direct_integral():
    torch.manual_seed(0)
    x = torch.randn(100, 3, dtype=torch.float64) * torch.tensor(
        [1.0, 2.0, 0.3], dtype=torch.float64
    )
    got = epps_pulley(x, knots=17, t_max=3.0)
    t = torch.linspace(0, 3, 17, dtype=torch.float64)
    for m in range(3):
        phi = torch.exp(1j * t[:, None] * x[:, m][None, :]).mean(dim=1)
        integrand = (phi - torch.exp(-0.5 * t**2)).abs() ** 2 * torch.exp(-0.5 * t**2)
        expected = 100 * 2 * torch.trapezoid(integrand, t)
        assert got[m].item() == pytest.approx(expected.item(), rel=1e-10)


def test_epps_pulley_null_expectation():
    # E[T_EP] under N(0,1) = 2 * int_0^3 (1 - exp(-t^2)) exp(-t^2/2) dt ~= 1.05 for any N
    torch.manual_seed(0)
    values = epps_pulley(torch.randn(512, 2000)).mean().item()
    t = torch.linspace(0, 3, 2001, dtype=torch.float64)
    expected = 2 * torch.trapezoid((1 - torch.exp(-(t**2))) * torch.exp(-0.5 * t**2), t).item()
    assert values == pytest.approx(expected, rel=0.1)


def test_random_directions_unit_norm():
    u = random_directions(D, 10, generator=gen())
    assert u.shape == (D, 10)
    assert torch.allclose(u.norm(dim=0), torch.ones(10), atol=1e-5)


def test_gaussian_small_and_does_not_grow_with_n(gaussian_value):
    torch.manual_seed(1)
    big = stat(torch.randn(4096, D))
    assert gaussian_value < 2.0
    assert big < 2.0
    assert big < 1.5 * gaussian_value


@pytest.mark.parametrize("case", ["collapsed", "low_rank", "shifted", "std3", "std0.1", "t2"])
def test_non_gaussian_much_larger(case, gaussian_value):
    torch.manual_seed(2)
    g = torch.randn(N, D)
    if case == "collapsed":
        z = torch.full((N, D), 0.5)
    elif case == "low_rank":
        z = torch.randn(N, 2) @ torch.randn(2, D)
        z = z / z.std(dim=0)
    elif case == "shifted":
        z = g + 2.0
    elif case == "std3":
        z = 3.0 * g
    elif case == "std0.1":
        z = 0.1 * g
    else:
        z = torch.distributions.StudentT(2.0).sample((N, D))
    assert stat(z) > 10 * gaussian_value


def test_time_steps_average_with_same_directions():
    torch.manual_seed(3)
    z = torch.randn(3, N, D) * torch.tensor([1.0, 2.0, 0.5])[:, None, None]
    joint = sigreg(z, M, generator=gen(7))
    per_step = [sigreg(z[i], M, generator=gen(7)) for i in range(3)]
    assert joint.item() == pytest.approx(torch.stack(per_step).mean().item(), rel=1e-5)


def test_generator_deterministic_and_fresh_directions():
    torch.manual_seed(4)
    z = 2.0 * torch.randn(N, D)
    assert sigreg(z, M, generator=gen(5)).item() == sigreg(z, M, generator=gen(5)).item()
    g = gen(5)
    assert sigreg(z, M, generator=g).item() != sigreg(z, M, generator=g).item()


def test_dtypes_float64_and_bf16():
    torch.manual_seed(5)
    z = torch.randn(N, D)
    ref = sigreg(z, M, generator=gen())
    v64 = sigreg(z.double(), M, generator=gen())
    assert v64.dtype == torch.float64
    assert v64.item() == pytest.approx(ref.item(), rel=1e-4)
    vbf = sigreg(z.bfloat16(), M, generator=gen())
    assert vbf.dtype == torch.float32
    assert math.isfinite(vbf.item()) and vbf.item() < 3.0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        vac = sigreg(z, M, generator=gen())
    assert vac.dtype == torch.float32
    assert vac.item() == pytest.approx(ref.item(), rel=1e-5)


def test_module_wrapper():
    torch.manual_seed(6)
    z = torch.randn(2, N, D)
    mod = SIGReg(num_projections=M, knots=9, t_max=4.0, generator=gen(3))
    expected = sigreg(z, M, knots=9, t_max=4.0, generator=gen(3))
    assert mod(z).item() == pytest.approx(expected.item())
    assert "num_projections=256" in repr(mod)


def test_input_validation():
    with pytest.raises(ValueError):
        sigreg(torch.randn(D))
    with pytest.raises(ValueError):
        sigreg(torch.randn(1, D))


@pytest.mark.parametrize("start", ["std3", "collapsed"])
def test_gradient_descent_moves_toward_standard_normal(start):
    torch.manual_seed(7)
    d = 16
    if start == "std3":
        z0 = 3.0 * torch.randn(N, d)
    else:
        z0 = 1.0 + 0.01 * torch.randn(N, d)
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.05)
    g = gen(0)
    before = sigreg(z0, M, generator=gen(99)).item()
    for _ in range(200):
        loss = sigreg(z, 128, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    z = z.detach()
    after = sigreg(z, M, generator=gen(99)).item()
    assert after < 0.05 * before
    assert after < 2.0
    std = z.std(dim=0)
    assert (std - 1).abs().max().item() < 0.25
    assert z.mean(dim=0).abs().max().item() < 0.2

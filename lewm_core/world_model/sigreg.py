"""SIGReg: the sketched isotropic Gaussian regulariser (LeJEPA, Balestriero & LeCun 2025).

Embeddings Z (N x D) are projected on M random unit directions u_m; each 1-D projection
x = Z u_m is tested for N(0, 1) with the Epps-Pulley statistic

    T_EP = N * integral_{-t_max}^{t_max} |phi_emp(t) - exp(-t^2 / 2)|^2 w(t) dt,
    phi_emp(t) = (1/N) sum_n exp(i t x_n),      w(t) = exp(-t^2 / 2),

computed as 2 * (trapezoid rule on `knots` points in [0, t_max]) since the integrand is even.
SIGReg is the mean of T_EP over the projections (and over time steps for (T, N, D) input).
Under the null (Z ~ N(0, I)) its expectation does not depend on N (about 1.06 for t_max = 3);
any departure from an isotropic standard Gaussian makes it grow linearly with N.

The statistic needs the whole batch at once: with several training processes use
`lewm_core.training.distributed.global_sigreg`, which all-gathers the shards (with gradients) first.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def epps_pulley(x: Tensor, knots: int = 17, t_max: float = 3.0) -> Tensor:
    """Epps-Pulley normality statistic of each column.

    x: (..., N, M) -- M one-dimensional samples of size N. Returns (..., M).
    """
    n = x.shape[-2]
    t = torch.linspace(0.0, t_max, knots, device=x.device, dtype=x.dtype)  # (K,)
    target = torch.exp(-0.5 * t * t)  # characteristic function of N(0, 1) and also w(t)
    xt = x.unsqueeze(-1) * t  # (..., N, M, K)
    re = torch.cos(xt).mean(dim=-3) - target  # (..., M, K)
    im = torch.sin(xt).mean(dim=-3)
    err = (re * re + im * im) * target  # |phi_emp - phi|^2 * w
    trap = torch.full((knots,), t_max / (knots - 1), device=x.device, dtype=x.dtype)
    trap[0] = trap[-1] = 0.5 * t_max / (knots - 1)
    return 2.0 * n * (err * trap).sum(dim=-1)


def random_directions(
    dim: int,
    num: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(dim, num) random unit vectors (normalised Gaussian), drawn with `generator` if given."""
    if generator is not None:
        u = torch.randn(dim, num, generator=generator, device=generator.device, dtype=dtype)
        u = u.to(device)
    else:
        u = torch.randn(dim, num, device=device, dtype=dtype)
    return u / u.norm(dim=0, keepdim=True)


def sigreg(
    z: Tensor,
    num_projections: int = 1024,
    knots: int = 17,
    t_max: float = 3.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """SIGReg loss (scalar) of embeddings z: (N, D), or (T, N, D) tested per time step.

    Fresh random directions are drawn at every call (shared across time steps); the result is the
    mean Epps-Pulley statistic over projections and time steps (see the module docstring).
    Computed in float32 even under autocast (float64 input stays float64).
    """
    if z.dim() not in (2, 3):
        raise ValueError(f"sigreg expects (N, D) or (T, N, D) embeddings, got {tuple(z.shape)}")
    if z.shape[-2] < 2:
        raise ValueError(f"sigreg needs at least 2 samples per step, got N={z.shape[-2]}")
    if knots < 2:
        raise ValueError(f"knots must be >= 2, got {knots}")
    dtype = torch.float64 if z.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = z.to(dtype)
        # directions are always drawn in float32 so that every input dtype sees the same ones
        u = random_directions(z.shape[-1], num_projections, z.device, generator=generator)
        u = u.to(dtype)
        return epps_pulley(z @ u, knots=knots, t_max=t_max).mean()


class SIGReg(nn.Module):
    """Module wrapper of `sigreg` with fixed settings; forward(z) -> scalar."""

    def __init__(
        self,
        num_projections: int = 1024,
        knots: int = 17,
        t_max: float = 3.0,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.num_projections = num_projections
        self.knots = knots
        self.t_max = t_max
        self.generator = generator

    def forward(self, z: Tensor) -> Tensor:
        return sigreg(z, self.num_projections, self.knots, self.t_max, self.generator)

    def extra_repr(self) -> str:
        return f"num_projections={self.num_projections}, knots={self.knots}, t_max={self.t_max}"

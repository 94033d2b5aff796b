"""Planning from pixels: the Cross-Entropy Method (CEM) through the world model's predictor.

`plan()` searches an action sequence of `horizon` blocks (each block = `frameskip` raw actions)
that brings the predicted latent closest to a goal latent:
    cost(a) = || rollout(z_start, a)[-1] - z_goal ||^2
Candidates are sampled in the *normalised* action space (z-scored with the dataset's action
statistics), clipped to the normalised image of the valid raw range [-1, 1], rolled out as one
batch under `torch.inference_mode`; candidate 0 is the current mean; mean and std are refit on
the `elites` cheapest; the final mean is returned.

Two sampling schemes:
- `independent` (as published): every raw action of every block is sampled independently.
- `block`: one action per block, held for its `frameskip` raw steps. Independent raw actions
  nearly cancel out over a block, so the search can barely move the agent far;
  holding one action per block keeps the search space small and its moves large.

`CEMPlanner` is the search, whatever scores the candidates; `Planner` scores them through a
LeWM. Every planner has the same `plan()`, which `mpc.run_mpc` drives; the settings are
`cem_config.CEMConfig`, the precision `precision.choose_dtype`.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from lewm_core.data.dataset import ActionStats
from lewm_core.errors import UserError
from lewm_core.planning.cem_config import CEMConfig
from lewm_core.planning.precision import DTYPE_CHOICES, DTYPES, default_dtype
from lewm_core.world_model.cpu_kernels import (
    bf16_probe,
    bf16_request_check,
    compile_blocked,
    first_line,
    record_compile_failure,
    warn_once,
)
from lewm_core.world_model.model import LeWM


@dataclass
class PlanResult:
    """The plan: raw actions to execute and how CEM got there.

    actions: (horizon * frameskip, action_dim) raw actions in [-1, 1].
    blocks: (horizon, frameskip * action_dim) normalised action blocks (the model's input).
    cost: predicted cost of the returned mean. seconds: wall time of the search.
    history: one dict per iteration: mean and std (horizon, k, action_dim) in normalised space
    (k = 1 for block sampling, frameskip otherwise), elite_costs (elites,), best_cost, and
    best_latents (horizon, D): the predicted latent trajectory of the cheapest candidate.
    """

    actions: np.ndarray
    blocks: np.ndarray
    cost: float
    seconds: float
    history: list[dict] = field(default_factory=list)


class CEMPlanner:
    """The Cross-Entropy Method over action blocks, whatever scores the candidates.

    A subclass says what a "latent" is and how candidates are scored: `encode_observation`
    and `encode_goal` give the start and goal latents `run_mpc` plans between, and `step_costs`
    rolls a batch of normalised action blocks (N, H, F*A) out from a start latent and returns
    the cost after each block (N, H) and the predicted latents (N, H, D); `cost` reduces them
    by the configured objective. `Planner` does it through a world model;
    `research/oracle_plan.py` through the simulator itself, with the same `plan()`.
    """

    def __init__(
        self,
        action_stats: ActionStats,
        cfg: CEMConfig | None,
        frameskip: int,
        action_dim: int,
        device: torch.device | str = "cpu",
    ):
        self.stats = action_stats
        self.cfg = cfg or CEMConfig()
        self.cfg.validate()
        self.frameskip = frameskip
        self.action_dim = action_dim
        self.device = torch.device(device)
        # The normalised values whose raw actions lie in [-1, 1]: candidates are clamped to them.
        mean = torch.as_tensor(action_stats.mean, dtype=torch.float32, device=self.device)
        std = torch.as_tensor(action_stats.std, dtype=torch.float32, device=self.device)
        self._lo, self._hi = (-1.0 - mean) / std, (1.0 - mean) / std

    def encode_observation(self, env, frames: np.ndarray) -> torch.Tensor:
        """Latents (k, D) of the last k observations (k, H, W, 3), one block apart, newest (the
        env's current observation) last; k <= `cfg.context`."""
        raise NotImplementedError

    def encode_goal(self, goal_frame: np.ndarray, goal_state: np.ndarray) -> torch.Tensor:
        """The latent (D,) of the goal, given as its image (H, W, 3) and its simulator state."""
        raise NotImplementedError

    def step_costs(
        self,
        z_start: torch.Tensor,
        z_goal: torch.Tensor,
        blocks: torch.Tensor,
        context_blocks: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Costs after each block (N, H) and predicted latents (N, H, D) of normalised action
        blocks (N, H, F*A), rolled out from `z_start` (D,) or a context (k, D) whose k - 1
        executed blocks are `context_blocks` (k - 1, F*A)."""
        raise NotImplementedError

    def cost(
        self,
        z_start: torch.Tensor,
        z_goal: torch.Tensor,
        blocks: torch.Tensor,
        context_blocks: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Costs (N,) by `cfg.objective` (the last block's cost, or the smallest over the
        horizon) and predicted latents (N, H, D); arguments as in `step_costs`."""
        per_block, pred = self.step_costs(z_start, z_goal, blocks, context_blocks)
        if self.cfg.objective == "min":
            return per_block.min(1).values, pred
        return per_block[:, -1], pred

    @torch.inference_mode()
    def plan(
        self,
        z_start: torch.Tensor,
        z_goal: torch.Tensor,
        generator: torch.Generator | None = None,
        keep_history: bool = True,
        context_blocks: torch.Tensor | None = None,
    ) -> PlanResult:
        """Search the action blocks from latent `z_start` (D,) toward `z_goal` (D,).

        With a context, `z_start` is (k, D): the last k observed latents, newest last, and
        `context_blocks` (k - 1, F*A) the normalised blocks executed between them."""
        c = self.cfg
        t0 = time.perf_counter()
        k = 1 if c.sampling == "block" else self.frameskip
        a = self.action_dim
        mean = torch.zeros(c.horizon, k, a, device=self.device)
        std = torch.full((c.horizon, k, a), c.init_std, device=self.device)
        history = []
        gen_device = generator.device if generator is not None else self.device
        for _ in range(c.iterations):
            noise = torch.randn(c.samples, c.horizon, k, a, generator=generator, device=gen_device)
            cand = mean + std * noise.to(self.device)
            cand[0] = mean
            cand = torch.maximum(torch.minimum(cand, self._hi), self._lo)
            blocks = cand.expand(-1, -1, self.frameskip, -1).reshape(c.samples, c.horizon, -1)
            costs, pred = self.cost(z_start, z_goal, blocks, context_blocks)
            elite_costs, idx = torch.topk(costs, c.elites, largest=False)
            elites = cand[idx]
            mean, std = elites.mean(0), elites.std(0, unbiased=False)
            if keep_history:
                history.append(
                    {
                        "mean": mean.cpu().numpy().copy(),
                        "std": std.cpu().numpy().copy(),
                        "elite_costs": elite_costs.float().cpu().numpy(),
                        "best_cost": float(elite_costs[0]),
                        "best_latents": pred[idx[0]].float().cpu().numpy(),
                    }
                )
        blocks = mean.expand(-1, self.frameskip, -1).reshape(c.horizon, -1)
        final_cost, _ = self.cost(z_start, z_goal, blocks[None], context_blocks)
        raw = self.stats.denormalize(blocks.reshape(-1, a).cpu().numpy())
        return PlanResult(
            actions=np.clip(raw, -1.0, 1.0).astype(np.float32),
            blocks=blocks.cpu().numpy(),
            cost=float(final_cost[0]),
            seconds=time.perf_counter() - t0,
            history=history,
        )


class Planner(CEMPlanner):
    """CEM planner over a LeWM: latents are encoded frames, candidates roll out through the
    model's predictor; one `plan()` call is one full CEM search."""

    def __init__(
        self,
        model: LeWM,
        action_stats: ActionStats,
        cfg: CEMConfig | None = None,
        rollout_mode: str = "fast",
        dtype: str = "auto",
        compile_rollout: bool = False,
    ):
        """`dtype`: float32, bfloat16 or auto (`default_dtype` of the model's device).

        `compile_rollout`: run the candidates' rollout through `torch.compile` (inductor) on the
        planner's own copy of the model, with its weights frozen into the graph (inductor
        `freezing`: weights as constants, pre-packed for the matmul library). It fuses the many
        small elementwise passes of a rollout into a few kernels (`bench/plan.py` measures both on
        a machine). The first plan pays the compilation (tens of seconds with an empty inductor
        cache, a few once the cache under /tmp holds it), so it pays for long evaluations, not
        for one interactive plan. Training the caller's model afterwards does not reach the
        frozen copy. Where compilation fails (no C++ compiler, an unsupported op) the planner
        warns and goes on eagerly with the same numbers, and so do later planners of the
        process, without trying again (`cpu_kernels.compile_blocked`; also under
        LEWM_CPU_KERNELS=plain).

        bfloat16 on a CPU that multiplies it slower than float32 plans (slower) with one
        warning per process; where bfloat16 matmuls do not run at all it is refused with a
        UserError naming --dtype float32 (`cpu_kernels.bf16_request_check`).
        """
        if dtype not in DTYPE_CHOICES:
            raise UserError(f"unknown dtype '{dtype}'; choose one of {', '.join(DTYPE_CHOICES)}")
        device = next(model.parameters()).device
        if dtype == "auto":
            dtype = default_dtype(device)
        if dtype == "bfloat16" and device.type == "cpu":
            slower = bf16_request_check(bf16_probe())
            if slower:
                warn_once("bf16-slower", slower)
        self.dtype_name = dtype
        # bfloat16 plans with a cast copy, a compiled rollout with a frozen one: the caller's
        # (possibly shared, possibly still training) model is not touched.
        private = dtype != "float32" or compile_rollout
        self.model = (copy.deepcopy(model).to(DTYPES[dtype]) if private else model).eval()
        self.dtype = DTYPES[dtype]
        self.rollout_mode = rollout_mode
        self._compiled_rollout = None
        if compile_rollout:
            blocked = compile_blocked(device.type)
            if blocked:
                warn_once("compile", f"{blocked}; planning without compilation")
            else:
                self._compiled_rollout = torch.compile(self.model.rollout, dynamic=False)
        super().__init__(action_stats, cfg, model.cfg.frameskip, model.cfg.action_dim, device)

    @property
    def compiled(self) -> bool:
        """True while the candidates' rollout runs compiled (False after a compile failure)."""
        return self._compiled_rollout is not None

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 frames (N, H, W, 3) -> latents (N, D)."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        return self.model.encode(x).float()

    def encode_observation(self, env, frames: np.ndarray) -> torch.Tensor:
        return self.encode(frames)

    def encode_goal(self, goal_frame: np.ndarray, goal_state: np.ndarray) -> torch.Tensor:
        return self.encode(goal_frame[None])[0]

    @torch.inference_mode()
    def step_costs(
        self,
        z_start: torch.Tensor,
        z_goal: torch.Tensor,
        blocks: torch.Tensor,
        context_blocks: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Squared L2 distances (N, H) from each predicted latent to `z_goal` (D,), and the
        predicted latents (N, H, D), of normalised action blocks (N, H, F*A); see
        `CEMPlanner.step_costs` for the context."""
        z = z_start.reshape(1, -1, z_start.shape[-1]).to(self.dtype)
        if context_blocks is not None and len(context_blocks):
            past = context_blocks.to(blocks).reshape(1, -1, blocks.shape[-1])
            blocks = torch.cat([past.expand(blocks.shape[0], -1, -1), blocks], 1)
        blocks = blocks.to(self.dtype)
        pred = None
        if self._compiled_rollout is not None and blocks.shape[0] > 1:  # the candidate batch
            try:
                # Freezing is read when a graph compiles, on the first call and on any
                # recompilation; `torch.compile(options=...)` does not pass it on (measured).
                # Past dynamo's recompile limit (8 graphs of `rollout` per process: planners of
                # other models or batch sizes) dynamo would run eager without a word; raising
                # there makes the fall-back below warn and `compiled` say so.
                import torch._dynamo.config as dynamo_config
                import torch._inductor.config as inductor_config

                with (
                    inductor_config.patch(freezing=True),
                    dynamo_config.patch(fail_on_recompile_limit_hit=True),
                ):
                    pred = self._compiled_rollout(z, blocks, mode=self.rollout_mode)
            except Exception as err:  # noqa: BLE001 - any compiler failure: plan eagerly
                message = (
                    f"torch.compile of the rollout failed ({first_line(err)}); "
                    "planning without compilation"
                )
                self._compiled_rollout = None
                if type(err).__name__ == "FailOnRecompileLimitHit":  # this process's graphs
                    warnings.warn(message, RuntimeWarning, stacklevel=2)
                else:  # the compiler itself: later planners of the process do not try again
                    record_compile_failure(self.device.type, first_line(err))
                    warn_once("compile", message)
        if pred is None:
            pred = self.model.rollout(z, blocks, mode=self.rollout_mode)
        pred = pred.float()
        return ((pred - z_goal.reshape(1, 1, -1).float()) ** 2).sum(-1), pred

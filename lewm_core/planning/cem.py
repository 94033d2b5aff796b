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
"""

from __future__ import annotations

import copy
import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from lewm_core.data.dataset import ActionStats
from lewm_core.errors import UserError
from lewm_core.world_model.config import OBJECTIVES, SAMPLINGS
from lewm_core.world_model.cpu_kernels import (
    bf16_probe,
    bf16_request_check,
    compile_blocked,
    first_line,
    forced_plain,
    record_compile_failure,
    warn_once,
)
from lewm_core.world_model.model import LeWM

# Planning precision: bfloat16 matmuls run several times faster on CPUs with bf16 units.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
DTYPE_CHOICES = ("auto", *DTYPES)


BF16_MIN_SPEEDUP = 1.5  # bfloat16 must multiply this many times faster than float32 to be used


def bf16_matmul_speedup() -> float:
    """This CPU's bfloat16 / float32 matmul rate (`cpu_kernels.bf16_probe`, measured once per
    process, under a second); 0.0 where bfloat16 matmuls do not run. Never raises.

    Nothing but a measurement settles it: with AMX bfloat16 ran at ten times float32's rate, on
    an Intel Xeon with AVX512-BF16 but no AMX at a third to a half of it (112-189 against
    308-328 GFLOP/s, where a `lab` plan took 2.86 s in bfloat16 against 1.77 s in float32;
    REPRODUCTION.md "Planning speed"), on an AVX2 CPU without AVX-512 at under 1% of it.
    """
    return bf16_probe().speedup


def choose_dtype(device: torch.device | str = "cpu") -> tuple[str, str]:
    """The planning precision `dtype="auto"` picks on `device`, and why (one line).

    bfloat16 where the hardware multiplies it fast (a CUDA GPU that supports it; a CPU on which
    a bfloat16 matmul, measured once, runs at least BF16_MIN_SPEEDUP times faster than a float32
    one), else float32. LEWM_PLAN_DTYPE (float32 | bfloat16) overrides it; LEWM_CPU_KERNELS=plain
    keeps a CPU on float32.
    """
    forced = os.environ.get("LEWM_PLAN_DTYPE")
    if forced:
        if forced not in DTYPES:
            raise UserError(
                f"LEWM_PLAN_DTYPE={forced!r} is not a planning precision; use float32 or bfloat16"
            )
        return forced, f"LEWM_PLAN_DTYPE={forced}"
    device = torch.device(device)
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bfloat16", "this GPU supports bfloat16"
        return "float32", "this GPU does not support bfloat16"
    if device.type != "cpu":
        return "float32", f"no bfloat16 measurement for {device.type}"
    if forced_plain():
        return "float32", "LEWM_CPU_KERNELS=plain"
    probe = bf16_probe()
    if not probe.runs:
        return "float32", probe.reason
    rates = (
        f"bfloat16 matmul {probe.speedup:.2g}x float32 ({probe.bf16_gflops:.1f} against "
        f"{probe.fp32_gflops:.0f} GFLOP/s at {probe.n})"
    )
    if probe.speedup >= BF16_MIN_SPEEDUP:
        return "bfloat16", f"{rates}, at least {BF16_MIN_SPEEDUP}x"
    return "float32", f"{rates}, under {BF16_MIN_SPEEDUP}x"


def default_dtype(device: torch.device | str = "cpu") -> str:
    """The planning precision `dtype="auto"` picks on `device` (`choose_dtype` says why).
    REPRODUCTION.md holds the success rates measured in both."""
    return choose_dtype(device)[0]


@dataclass
class CEMConfig:
    """CEM settings; defaults as in the paper (300 x 30, top 30, horizon 5 blocks)."""

    samples: int = 300
    elites: int = 30
    iterations: int = 30
    horizon: int = 5
    init_std: float = 1.0
    sampling: str = "block"
    receding_horizon: int = 5
    # Observed frames the rollout starts from: 1 (the current frame, as published) or up to the
    # model's history: the current frame and those 1, 2 blocks before it, with the blocks actually
    # executed between them, so the predictor sees motion (Reacher's velocities) at the start.
    context: int = 1
    # What a candidate costs: "last", the squared L2 between its last predicted latent and the
    # goal latent (as published), or "min", the smallest of those distances over its H predicted
    # latents (one per block), so that a plan passing through the goal early is not rated by
    # where it drifts afterwards: the success test counts the goal reached at any step.
    objective: str = "last"

    def validate(self) -> None:
        if self.sampling not in SAMPLINGS:
            raise UserError(f"unknown sampling '{self.sampling}'; choose {' or '.join(SAMPLINGS)}")
        if self.objective not in OBJECTIVES:
            raise UserError(
                f"unknown CEM objective '{self.objective}'; choose {' or '.join(OBJECTIVES)}"
            )
        if not 1 <= self.elites <= self.samples:
            raise UserError(f"elites must be in [1, samples={self.samples}], got {self.elites}")
        for name in ("samples", "iterations", "horizon", "receding_horizon", "context"):
            if getattr(self, name) < 1:
                raise UserError(f"CEM {name} must be at least 1, got {getattr(self, name)}")
        if self.receding_horizon > self.horizon:
            raise UserError(
                f"receding_horizon {self.receding_horizon} exceeds horizon {self.horizon}"
            )
        if not self.init_std > 0:
            raise UserError(f"init_std must be positive, got {self.init_std}")


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
        small elementwise passes of a rollout into a few kernels; bf16, 2 CPU cores, one plan:
        lab 0.65 s against 0.91 s eager, paper 2.26 s against 3.21 s. The first plan pays the
        compilation (25-35 s on 2 cores with an empty inductor cache, a few seconds once the
        cache under /tmp holds it), so it pays for long evaluations, not for one interactive
        plan. Training the caller's model afterwards does not reach the frozen copy. Where
        compilation fails (no C++ compiler, an unsupported op) the planner warns and goes on
        eagerly with the same numbers, and so do later planners of the process, without
        trying again (`cpu_kernels.compile_blocked`; also under LEWM_CPU_KERNELS=plain).

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


@dataclass
class EpisodeResult:
    """One MPC episode: success, steps taken, frames (T+1, H, W, 3), plan times (s), and the
    env's `goal_errors` at the last step (how close a failed episode ended). Per step t < T, as
    a dataset records it (the observation *before* action t): `actions` (T, A) raw,
    `states` (T, S) the env's named quantities concatenated, `sim_states` (T, Q)."""

    success: bool
    steps: int
    frames: np.ndarray
    plan_seconds: list[float]
    final_cost: float
    final_errors: dict[str, float] = field(default_factory=dict)
    actions: np.ndarray | None = None
    states: np.ndarray | None = None
    sim_states: np.ndarray | None = None


def episode_generator(
    seed: int, episode: int, device: torch.device | str = "cpu"
) -> torch.Generator:
    """CEM's random generator for `episode` of a task set drawn with `seed`. Everything that plans
    a task set (`lewm eval`, `lewm collect-planned`, the demo, research/oracle_plan.py) seeds it
    this way, so one seed gives the same plans everywhere."""
    return torch.Generator(device=device).manual_seed(seed * 100_003 + episode)


def run_mpc(
    env,
    planner: CEMPlanner,
    start_state: np.ndarray,
    goal_state: np.ndarray,
    goal_frame: np.ndarray,
    budget: int = 50,
    generator: torch.Generator | None = None,
    stop_at_goal: bool = True,
) -> EpisodeResult:
    """Model-predictive control: plan, execute `receding_horizon` blocks, re-encode, replan.

    Success is the env's `is_success(goal_state)` at any step within `budget` raw steps.
    With `planner.cfg.context` k > 1, each plan starts from the last k observations one block
    apart (fewer at the start of the episode) and the blocks executed between them. Without
    `stop_at_goal` the episode runs all `budget` steps (the planner keeps aiming at the goal
    after reaching it), so that every episode has the same length.
    """
    base = env.unwrapped
    base.set_state(start_state)
    obs = base.render()
    frames = [obs]
    z_goal = planner.encode_goal(goal_frame, goal_state)
    plan_seconds, steps, cost = [], 0, float("nan")
    success = bool(base.is_success(goal_state))
    n_exec = planner.cfg.receding_horizon * planner.frameskip
    k_max, fs = planner.cfg.context, planner.frameskip
    block_frames, executed = [obs], []  # observations at block boundaries; raw blocks (F, A)
    actions, states, sims = [], [], []
    while not (success and stop_at_goal) and steps < budget:
        k = min(k_max, len(block_frames))
        z = planner.encode_observation(base, np.stack(block_frames[-k:]))
        past = None
        if k > 1:
            raw = np.concatenate(executed[-(k - 1) :])  # ((k - 1) * F, A)
            normed = planner.stats.normalize(raw).reshape(k - 1, -1)
            past = torch.as_tensor(normed, dtype=torch.float32, device=planner.device)
        result = planner.plan(
            z if k > 1 else z[-1], z_goal, generator, keep_history=False, context_blocks=past
        )
        plan_seconds.append(result.seconds)
        cost = result.cost
        for i, action in enumerate(result.actions[:n_exec]):
            states.append(base.state_vector)
            sims.append(base.get_state().copy())
            actions.append(np.asarray(action, np.float32))
            obs, *_ = env.step(action)
            frames.append(obs)
            steps += 1
            if (i + 1) % fs == 0:
                block_frames.append(obs)
                executed.append(result.actions[i + 1 - fs : i + 1])
            if base.is_success(goal_state):
                success = True
                if stop_at_goal:
                    break
            if steps >= budget:
                break
    errors = base.goal_errors(goal_state)
    a_dim, q_dim, s_dim = base.action_space.shape[0], len(base.get_state()), len(base.state_vector)
    return EpisodeResult(
        success,
        steps,
        np.stack(frames),
        plan_seconds,
        cost,
        errors,
        np.asarray(actions, np.float32).reshape(steps, a_dim),
        np.asarray(states, np.float32).reshape(steps, s_dim),
        np.asarray(sims, np.float64).reshape(steps, q_dim),
    )

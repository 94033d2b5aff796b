"""`lewm` sub-commands about what the latent space knows: probes, t-SNE, surprise and
straightness, and the held-out sample they read where a model's dataset is not on disk.
`register(sub)` adds them to the main parser's sub-parsers; every command takes `--json` (its
last stdout line is then one JSON object) and reports bad input as `UserError`.

    lewm probe         --checkpoint runs/x [--data] [--train-frames --test-frames --no-mlp]
    lewm tsne          --checkpoint runs/x [--data] [--points 2000 --seed 0 --color agent_pos]
    lewm surprise      --checkpoint runs/x [--episodes 20 --seed 0 --steps 20 --perturb-step]
    lewm straightness  --checkpoint runs/x [--data] [--episodes 50 --split val]
    lewm sample        --checkpoint assets/models/x --episodes 20 --steps 200 [--overwrite]

Without `--data`, the commands that read frames use the model's dataset, or where it is not on
disk the model's held-out sample (`lewm_core.data.samples`); each prints which ("frames: ...").
"""

from __future__ import annotations

import argparse

from lewm_core.cli.arguments import (
    add_model_flag,
    add_output_flags,
    add_seed_flag,
    emit_json,
    path_arg,
    positive_float,
    say_to_stderr,
)

# --------------------------------------------------------------------------- commands


def cmd_probe(args: argparse.Namespace) -> None:
    from lewm_core.analysis.probing import format_probe_table, probe
    from lewm_core.world_model.checkpoint import load_model

    loaded = load_model(args.checkpoint)
    result = probe(
        loaded,
        args.data,
        max_train=args.train_frames,
        max_test=args.test_frames,
        seed=args.seed,
        mlp=not args.no_mlp,
        untrained_mlp=args.untrained_mlp,
        alpha=args.alpha,
        progress=say_to_stderr(args.quiet),
    )
    print(result["frames_note"])
    print(format_probe_table(result))
    print(f"({result['train_frames']} train / {result['test_frames']} test frames)")
    if args.json:
        emit_json(result)


def cmd_tsne(args: argparse.Namespace) -> None:
    from lewm_core.analysis.tsne import tsne_latents, write_tsne
    from lewm_core.world_model.checkpoint import load_model

    loaded = load_model(args.checkpoint)
    result = tsne_latents(
        loaded,
        args.data,
        points=args.points,
        seed=args.seed,
        color=args.color,
        component=args.component,
        perplexity=args.perplexity,
        n_neighbors=args.neighbors,
        untrained=args.untrained,
        progress=say_to_stderr(args.quiet),
    )
    print(result["frames_note"])
    line = f"t-SNE of {result['points']} latents: trustworthiness {result['trustworthiness']:.4f}"
    if "untrained_trustworthiness" in result:
        line += f" (untrained encoder {result['untrained_trustworthiness']:.4f})"
    print(line)
    if args.out:
        print(f"wrote {write_tsne(result, args.out)}")
    if args.json:
        keys = ("trustworthiness", "untrained_trustworthiness", "points", "seed", "perplexity")
        summary = {k: result[k] for k in keys if k in result}
        summary.update(
            n_neighbors=result["n_neighbors"],
            color=result["color_name"],
            data=result["data"],
            data_source=result["data_source"],
            frames_note=result["frames_note"],
            out=args.out,
        )
        emit_json(summary)


def cmd_surprise(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from lewm_core.analysis.surprise import curve_summary, surprise_experiment
    from lewm_core.world_model.checkpoint import load_model

    loaded = load_model(args.checkpoint)
    kinds = tuple(args.perturbation) if args.perturbation else ("teleport", "color")
    with tqdm(total=args.episodes, unit="ep", disable=args.quiet, desc="surprise") as bar:
        result = surprise_experiment(
            loaded,
            episodes=args.episodes,
            seed=args.seed,
            steps=args.steps,
            perturb_step=args.perturb_step,
            perturbations=kinds,
            progress=lambda done, total: bar.update(done - bar.n),
        )
    p = result["perturb_step"]
    print(f"surprise at model step {p} over {result['episodes']} episodes ({result['env']}):")
    for kind in kinds:
        s = result[kind]
        print(
            f"  {kind:9s} jump {s['jump']:.4g} (x{s['ratio']:.3g}), paired t {s['t']:.3g}, "
            f"p = {s['p_value']:.3g} (one-sided), peak at the perturbation in "
            f"{s['argmax_rate']:.0%} of episodes (unperturbed {s['argmax_rate_unperturbed']:.0%})"
        )
    if args.json:
        summary = {k: v for k, v in result.items() if k != "curves"}
        summary["mean_curves"] = curve_summary(result["curves"])
        emit_json(summary)


def cmd_straightness(args: argparse.Namespace) -> None:
    from lewm_core.analysis.straightness import straightness
    from lewm_core.world_model.checkpoint import load_model

    loaded = load_model(args.checkpoint)
    result = straightness(
        loaded,
        args.data,
        episodes=args.episodes,
        seed=args.seed,
        split=args.split,
        untrained=not args.no_untrained,
        progress=say_to_stderr(args.quiet),
    )
    print(result["frames_note"])
    print(
        f"mean cosine of consecutive latent velocities over {result['episodes']} episodes "
        f"({result['split']} split):"
    )
    for name in ("trained", "untrained", "pixels"):
        if name in result:
            r = result[name]
            print(f"  {name:9s} {r['mean']:+.4f} (std {r['std']:.3f}, {r['pairs']} pairs)")
    if args.json:
        emit_json(result)


def cmd_sample(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from lewm_core.shipping import add_sample

    with tqdm(total=args.episodes, unit="ep", disable=args.quiet, desc="sample") as bar:
        info = add_sample(
            args.checkpoint,
            args.episodes,
            args.steps,
            policy=args.policy,
            overwrite=args.overwrite,
            progress=lambda done, total: bar.update(done - bar.n),
        )
    print(
        f"wrote {args.checkpoint}/sample.h5: {info['episodes']} episodes x {info['steps']} steps "
        f"({info['frames']:,} frames, {info['bytes'] / 1e6:.2f} MB) in {info['wall_s']} s"
    )
    if args.json:
        emit_json(info)


# --------------------------------------------------------------------------- parser


def register(sub) -> None:
    """Add probe, tsne, surprise, straightness and sample to argparse
    sub-parsers `sub`."""
    p = sub.add_parser("probe", help="linear / MLP probes of the state from single latents")
    add_model_flag(p)
    p.add_argument(
        "--data", type=path_arg, help="dataset (default: the one the model was trained on)"
    )
    p.add_argument(
        "--train-frames", type=int, default=20000, help="frames the probes are fitted on"
    )
    p.add_argument(
        "--test-frames",
        type=int,
        default=5000,
        help="held-out frames (other episodes) the probes are scored on",
    )
    add_seed_flag(p)
    p.add_argument("--alpha", type=float, default=1.0, help="ridge strength (linear probe)")
    p.add_argument("--no-mlp", action="store_true", help="linear probes only")
    p.add_argument("--untrained-mlp", action="store_true", help="also MLP-probe the floor")
    add_output_flags(p)
    p.set_defaults(func=cmd_probe)

    t = sub.add_parser("tsne", help="t-SNE map of latents with trustworthiness")
    add_model_flag(t)
    t.add_argument(
        "--data", type=path_arg, help="dataset (default: the one the model was trained on)"
    )
    t.add_argument("--points", type=int, default=2000, help="frames to map")
    add_seed_flag(t)
    t.add_argument("--color", default="agent_pos", help="state quantity, e.g. agent_pos[1]")
    t.add_argument("--component", help="component index of a vector quantity, or 'norm'")
    t.add_argument(
        "--perplexity",
        type=positive_float,
        default=30.0,
        help="t-SNE perplexity (about the neighbours each point keeps)",
    )
    t.add_argument("--neighbors", type=int, default=10, help="trustworthiness n_neighbors")
    t.add_argument("--untrained", action="store_true", help="also map an untrained encoder")
    t.add_argument("--out", type=path_arg, help="write coordinates to a .csv or .npz file")
    add_output_flags(t)
    t.set_defaults(func=cmd_tsne)

    s = sub.add_parser("surprise", help="violation of expectation: teleport / colour change")
    add_model_flag(s)
    s.add_argument(
        "--episodes",
        type=int,
        default=20,
        help="episodes, each run with and without the perturbation",
    )
    add_seed_flag(s)
    s.add_argument("--steps", type=int, default=20, help="model steps per episode")
    s.add_argument("--perturb-step", type=int, help="model step of the perturbation (middle)")
    s.add_argument(
        "--perturbation",
        action="append",
        choices=("teleport", "color"),
        help="repeatable; default both",
    )
    add_output_flags(s)
    s.set_defaults(func=cmd_surprise)

    st = sub.add_parser("straightness", help="temporal straightness of latent trajectories")
    add_model_flag(st)
    st.add_argument(
        "--data", type=path_arg, help="dataset (default: the one the model was trained on)"
    )
    st.add_argument(
        "--episodes", type=int, default=50, help="episodes whose latent paths are measured"
    )
    add_seed_flag(st)
    st.add_argument(
        "--split",
        default="val",
        choices=("val", "all"),
        help="val: episodes the model never trained on; all: the whole file",
    )
    st.add_argument(
        "--no-untrained",
        action="store_true",
        help="skip the untrained encoder's figure beside the trained one",
    )
    add_output_flags(st)
    st.set_defaults(func=cmd_straightness)

    sa = sub.add_parser(
        "sample",
        help="collect a model's held-out sample (sample.h5): frames its analyses read where "
        "its dataset is not on disk",
    )
    add_model_flag(sa, help="model folder; the sample is saved there")
    sa.add_argument("--episodes", type=int, default=20, help="episodes (2 to 1000; default 20)")
    sa.add_argument(
        "--steps",
        type=int,
        default=200,
        help="raw steps per episode (the dataset's episode length; default 200); at most "
        "100,000 frames in all",
    )
    sa.add_argument("--policy", default="default", help="the env's data policy (as lewm collect)")
    sa.add_argument("--overwrite", action="store_true", help="replace an existing sample")
    add_output_flags(sa)
    sa.set_defaults(func=cmd_sample)

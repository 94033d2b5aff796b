"""LeWM Lab, the compact Gradio demo (a Hugging Face Space with ``sdk: gradio``): its page.

Run it with ``python app/gradio_app.py`` (port: ``--port``, else GRADIO_SERVER_PORT, else 7860;
host: ``--host``, else GRADIO_SERVER_NAME, else 127.0.0.1). Two named API endpoints, callable
with ``gradio_client`` (computed in ``app/gradio_endpoints.py``):

    /plan      (task, seed, samples, iterations, budget) -> rollout video, image strip,
               summary text, details (success, steps, plan times, ...)
    /surprise  (task, seed, episodes, steps, perturb_step) -> plot, summary text, details
               (mean surprise per step, unperturbed and teleported, and the statistics)

The page opens with what the demo does in two plain sentences, the diagram of the model and its
planning loop, the paper, and the technical introduction folded in "How it works". Before
anything is computed it shows the selected task's precomputed rollout (``make figures``) and its
model card (``app/showcase.py`` reads both). Requests wait in one queue and run one at a time;
their outputs show the place in the queue while they wait.
"""

from __future__ import annotations

import os

# Must be set before anything imports mujoco (Reacher renders offscreen through EGL).
os.environ.setdefault("MUJOCO_GL", "egl")

import argparse  # noqa: E402
import threading  # noqa: E402

import gradio as gr  # noqa: E402

from app.gradio_endpoints import (  # noqa: E402
    CEM_KNOBS,
    FAST_ITERATIONS,
    FAST_SAMPLES,
    MAX_BUDGET,
    MAX_EPISODES,
    MAX_ITERATIONS,
    MAX_SAMPLES,
    MAX_STEPS,
    OUTPUT_AGE_S,
    plan_to_goal,
    shipped_models,
    teleport_surprise,
    warm_up,
)
from app.lab_store import env_title, set_torch_threads  # noqa: E402
from app.showcase import (  # noqa: E402
    ARCHITECTURE,
    FIGURES_DIR,
    MAKE_FIGURES,
    ROLLOUT_PREFIX,
    ROOT,
    figure,
    model_card,
    rollout_figure,
)
from lewm_core import paper  # noqa: E402
from lewm_core.planning.cem_config import CEMConfig  # noqa: E402

QUEUE_CONCURRENCY = 1  # events run at once: planning is CPU-bound and the cores are few
QUEUE_SIZE = 32  # requests waiting at most; one more is refused with a message

WELCOME = """
# LeWM Lab: a world model that plans from pixels
A *world model* is a neural network that learns how a small simulated world changes when an agent
acts in it, here only from watching pictures of it. Give it a picture of a goal and it imagines
many sequences of moves, then carries out the ones that it predicts will get there.
"""

INTRO = """
**LeWorldModel** encodes each 64 px frame to one 192-d latent and predicts the next latent from
the actions. It plans **in latent space**: encode the start and the goal frame, search action
sequences with the cross-entropy method (CEM) through the predictor, act, replan (MPC).
Every number below is computed by the project's `lewm_core` package with the shipped `lab`
models; the full lab (training, data, decoding, latent space) is the Streamlit app
(`make lab`).
"""

CEM_NOTE = (
    f"Fast interactive CEM: **{FAST_SAMPLES} samples x {FAST_ITERATIONS} iterations** (top "
    f"{CEMConfig.elites}, horizon {CEMConfig.horizon} blocks, each model's own planning "
    f"defaults). The paper uses {CEMConfig.samples} x {CEMConfig.iterations}; `REPRODUCTION.md` "
    "compares the two budgets' success and planning time on every task."
)

PAPER_LINK = (
    f"**Paper:** [{paper.TITLE}]({paper.ARXIV_URL}) ({paper.short_authors()}, {paper.YEAR})"
)

QUEUE_NOTE = (
    "Requests run one at a time, in the order they come: while others run, the bar over the "
    "outputs shows your place in the queue."
)


# --------------------------------------------------------------------------- what shows on load
def example_rollout(task: str | None) -> tuple[str | None, str]:
    """(GIF path or None, caption Markdown) of the precomputed rollout of `task`'s model.

    The GIF is drawn by `make figures` for each shipped model; where it is missing (a model of
    another folder, LEWM_ASSETS_DIR, or figures not made) the caption says so instead.
    """
    task = (task or "").strip()
    found = rollout_figure(task) if task else None
    if found is None:
        return None, (
            f"No precomputed example for {env_title(task) or 'this task'}: "
            f"`{FIGURES_DIR.relative_to(ROOT)}/{ROLLOUT_PREFIX}{task}.gif` is not there "
            f"(`{MAKE_FIGURES}` draws one per model in assets/models). Press **Plan** to plan "
            "one now."
        )
    return str(found.path), (
        f"**A precomputed example**, drawn by `{MAKE_FIGURES}` (not planned now; **Plan** "
        f"plans a fresh one): {found.caption}"
    )


def card_markdown(task: str | None) -> str:
    """The model card of `task`'s shipped model as Markdown, or a line saying there is none."""
    folder = shipped_models().get((task or "").strip())
    card = model_card(folder) if folder is not None else None
    if card is None:
        return f"No model card: {env_title(task or '') or 'this task'} has no shipped model here."
    return card


def show_task(task: str | None) -> tuple[dict, str, str]:
    """The example rollout (shown or hidden), its caption and the card of the chosen task."""
    path, caption = example_rollout(task)
    return gr.update(value=path, visible=path is not None), caption, card_markdown(task)


# --------------------------------------------------------------------------- the page
def _cem_slider(name: str, cap: int, value: int) -> gr.Slider:
    """A slider for CEM setting `name` from its declared lower limit to the demo's `cap`, with
    the knob's help line."""
    k = CEM_KNOBS[name]
    return gr.Slider(int(k.lo), cap, value, step=1, label=f"CEM {name}", info=k.help)


def _header() -> None:
    """The two sentences, the diagram, the paper and the technical introduction (folded)."""
    gr.Markdown(WELCOME)
    diagram = figure(ARCHITECTURE)
    if diagram is not None:
        gr.Image(
            str(diagram.path),
            type="filepath",
            label="How LeWM learns (top) and plans (bottom)",
            interactive=False,
            height=360,
            elem_id="architecture",
        )
        gr.Markdown(diagram.caption, elem_id="architecture-caption")
    gr.Markdown(PAPER_LINK, elem_id="paper-link")
    with gr.Accordion("How it works", open=False):
        gr.Markdown(INTRO + "\n" + CEM_NOTE)


def build_demo() -> gr.Blocks:
    """The Gradio Blocks of the demo (endpoints `/plan` and `/surprise`)."""
    tasks = shipped_models()
    choices = [(env_title(t), t) for t in tasks]
    first = next(iter(tasks), None)
    with gr.Blocks(title="LeWM Lab", delete_cache=(OUTPUT_AGE_S, OUTPUT_AGE_S)) as demo:
        _header()
        if not tasks:
            gr.Markdown(
                "**No shipped model found** in `assets/models/` (or LEWM_ASSETS_DIR): each "
                "task folder needs config.json and model.safetensors."
            )
        with gr.Row():
            # custom values are checked by the endpoints (one clear message for UI and API)
            task = gr.Dropdown(
                choices,
                value=first,
                label="Task",
                allow_custom_value=True,
                scale=2,
                elem_id="task",
            )
            seed = gr.Number(value=0, precision=0, label="Seed", scale=1, elem_id="seed")
        example_path, example_text = example_rollout(first)
        with gr.Row():
            example = gr.Image(
                example_path,
                type="filepath",
                label="Example: rollout (left) beside its goal (right), precomputed",
                interactive=False,
                visible=example_path is not None,
                scale=1,
                elem_id="example-rollout",
            )
            example_caption = gr.Markdown(example_text, elem_id="example-caption")
        with gr.Accordion("Model card of the selected task", open=False, elem_id="card"):
            card = gr.Markdown(card_markdown(first), elem_id="model-card")
        with gr.Tab("Plan to a goal"):
            gr.Markdown(
                "The goal is the state 25 steps later in a fresh episode of the task's data "
                "policy (drawn from the seed); the agent has the step budget to reach it."
            )
            with gr.Accordion("CEM budget", open=False):
                with gr.Row():
                    samples = _cem_slider("samples", MAX_SAMPLES, FAST_SAMPLES)
                    iterations = _cem_slider("iterations", MAX_ITERATIONS, FAST_ITERATIONS)
                    budget = gr.Slider(1, MAX_BUDGET, 50, step=1, label="Step budget")
            plan_btn = gr.Button("Plan", variant="primary", elem_id="plan-button")
            gr.Markdown(QUEUE_NOTE, elem_id="queue-note")
            with gr.Row():
                video = gr.Video(
                    label="Rollout (left) next to the goal (right)",
                    format=None,
                    autoplay=True,
                    loop=True,
                    elem_id="rollout-video",
                    scale=1,
                )
                with gr.Column(scale=1):
                    plan_summary = gr.Markdown(
                        "Press **Plan** (a few seconds with the fast CEM budget).",
                        elem_id="plan-summary",
                    )
                    with gr.Accordion("Details (JSON)", open=False):
                        plan_json = gr.JSON(label="plan")
            strip = gr.Image(
                label="Rollout frames, first to last | goal",
                type="numpy",
                format="png",
                elem_id="rollout-strip",
            )
        with gr.Tab("Surprise of a teleport"):
            gr.Markdown(
                "Episodes of the data policy are replayed with the same actions; in one copy "
                "the agent is **teleported** just before the chosen step. Surprise is the "
                "squared distance between the latent the model predicted and the latent of the "
                "frame it then sees: a model that has learned the dynamics jumps at the "
                "teleport and settles again."
            )
            with gr.Row():
                episodes = gr.Slider(2, MAX_EPISODES, 8, step=1, label="Episodes")
                steps = gr.Slider(3, MAX_STEPS, 20, step=1, label="Model steps per episode")
                p_step = gr.Slider(1, MAX_STEPS - 1, 10, step=1, label="Teleport step")
            surprise_btn = gr.Button("Run the teleport experiment", variant="primary")
            gr.Markdown(QUEUE_NOTE)
            surprise_summary = gr.Markdown()
            plot = gr.Plot(label="Surprise per model step")
            with gr.Accordion("Details (JSON)", open=False):
                surprise_json = gr.JSON(label="surprise")
        # Reading two files: outside the queue, so that it never waits behind a plan.
        task.change(
            show_task,
            [task],
            [example, example_caption, card],
            queue=False,
            show_progress="hidden",
            api_visibility="private",
        )
        # "full": while a request waits, its outputs show its place in the queue, then a timer.
        plan_btn.click(
            plan_to_goal,
            [task, seed, samples, iterations, budget],
            [video, strip, plan_summary, plan_json],
            api_name="plan",
            show_progress="full",
        )
        surprise_btn.click(
            teleport_surprise,
            [task, seed, episodes, steps, p_step],
            [plot, surprise_summary, surprise_json],
            api_name="surprise",
            show_progress="full",
        )
    demo.queue(default_concurrency_limit=QUEUE_CONCURRENCY, max_size=QUEUE_SIZE)
    return demo


def main(argv: list[str] | None = None) -> None:
    """Parse --host/--port and serve the demo until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        help="port (default: GRADIO_SERVER_PORT or 7860)",
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        help="interface to listen on (default: GRADIO_SERVER_NAME or 127.0.0.1)",
    )
    parser.add_argument("--no-warm-up", action="store_true", help="load models on first use")
    args = parser.parse_args(argv)
    set_torch_threads()
    demo = build_demo()
    if not args.no_warm_up:
        threading.Thread(target=warm_up, daemon=True).start()
    demo.launch(server_name=args.host, server_port=args.port, show_error=True)


if __name__ == "__main__":
    main()

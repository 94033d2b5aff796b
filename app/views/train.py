"""Train: start, stop and resume a background training job; watch its curves live.

Training runs as a detached `lewm train` process managed by ``lewm_core.training.jobs``: its state
is in the run folder (``job.json``, ``metrics.jsonl``, ``train.log``), so a reload or another
browser finds it again. A fragment polls ``metrics.jsonl`` every 2 s while a job runs. The monitored
run is in the URL (``?run=``).
"""

from __future__ import annotations

import os
import time

import streamlit as st

from app import lab_public, models, ui
from lewm_core.errors import UserError
from lewm_core.knobs import knobs_of
from lewm_core.presets import PRESETS
from lewm_core.training import jobs
from lewm_core.training.config import TrainConfig

W_RUN, W_COMPARE = "train_run_w", "train_compare_w"
MSG = "train_message"  # (kind, text) shown once after a start/stop/resume
WAS_RUNNING = "train_was_running"

STATE_BADGES = {
    "running": ("running", ":material/sync:", "blue"),
    "finished": ("finished", ":material/check:", "green"),
    "stopped": ("stopped (checkpoint kept: resume it)", ":material/pause:", "orange"),
    "failed": ("failed", ":material/close:", "red"),
    "idle": ("no job started from the lab", ":material/info:", "gray"),
}
# (metrics row key, panel title, log y); train rows first, then checkpoint (validation) rows
PANELS = (
    ("loss", "loss = pred + lambda * SIGReg", True),
    ("pred_loss", "prediction loss (train)", True),
    ("sigreg", "SIGReg (train)", True),
    ("emb_std_mean", "collapse monitor: embedding std (val)", False),
    ("pred_over_copy", "collapse monitor: pred / copy loss (val)", True),
    ("effective_rank", "effective rank of embeddings (val)", False),
)
EVAL_KEYS = {"emb_std_mean", "pred_over_copy", "effective_rank"}


def _default_threads() -> int:
    return max(1, (os.cpu_count() or 2) - 1)


def _knob_input(col, label: str, name: str, value, *, hi=None, help_extra: str = "", **kwargs):
    """A number widget for TrainConfig field `name`: its limits and help line come from the
    field's knob (`hi` may lower the upper limit, e.g. to this machine's cores)."""
    k = knobs_of(TrainConfig)[name]
    cast = float if k.kind is float else int
    top = k.hi if hi is None else (hi if k.hi is None else min(hi, k.hi))
    return col.number_input(
        label,
        min_value=None if k.lo is None else cast(k.lo),
        max_value=None if top is None else cast(top),
        value=cast(value),
        help=k.help[:1].upper() + k.help[1:] + (f". {help_extra}" if help_extra else ""),
        **kwargs,
    )


def _start_form(datasets) -> None:
    st.subheader("Start a run")
    if not datasets:
        st.info(f"No dataset in {models.data_dir()}: collect one on the Data page first.")
        return
    with st.form("train_start_form"):
        c1, c2, c3 = st.columns([3, 1, 1])
        data = c1.selectbox("Dataset", [p.stem for p in datasets], key="train_data")
        presets = list(PRESETS)
        preset = c2.selectbox(
            "Preset",
            presets,
            index=presets.index("lab"),
            key="train_preset",
            help="; ".join(f"{p.name}: {p.source}" for p in PRESETS.values()),
        )
        lam = _knob_input(
            c3,
            "lambda (SIGReg weight)",
            "sigreg_weight",
            TrainConfig.sigreg_weight,
            step=0.01,
            format="%.3f",
            key="train_lambda",
            help_extra="Watch the embeddings collapse without it.",
        )
        c4, c5, c6, c7, c8 = st.columns([1, 1, 1, 1, 2])
        max_steps = _knob_input(
            c4,
            "Max steps",
            "max_steps",
            1000,
            key="train_max_steps",
            help_extra="The run stops at max steps or after the epochs, whichever comes first.",
        )
        epochs = _knob_input(
            c5,
            "Epochs",
            "epochs",
            PRESETS["lab"].train["epochs"],
            key="train_epochs",
            help_extra="One epoch is (training clips) / (batch size) steps: raise the epochs on "
            "a small dataset, or the run ends before max steps.",
        )
        batch = _knob_input(
            c6, "Batch size", "batch_size", PRESETS["lab"].train["batch_size"], key="train_batch"
        )
        seed = _knob_input(c7, "Seed", "seed", TrainConfig.seed, key="train_seed")
        name = c8.text_input(
            "Run name",
            key="train_name",
            placeholder="empty: <dataset>-lam<lambda>-s<seed>",
            help="Saved in runs/<name>/. Letters, digits, '.', '_' and '-' only.",
        )
        with st.expander("Advanced"):
            a1, a2 = st.columns(2)
            every = _knob_input(
                a1, "Checkpoint every (steps)", "checkpoint_every", 100, key="train_ckpt"
            )
            threads = _knob_input(
                a2,
                "CPU threads",
                "threads",
                _default_threads(),
                hi=os.cpu_count() or 1,
                key="train_threads",
            )
        submitted = st.form_submit_button(
            "Start training", type="primary", icon=":material/play_arrow:"
        )
    if not submitted:
        return
    name = name.strip() or f"{data}-lam{lam:g}-s{int(seed)}"
    try:
        run = models.run_path(name)
        started = lab_public.start_training(  # in public mode through the bounded queue
            run,
            data=datasets[[p.stem for p in datasets].index(data)],
            preset=preset,
            max_steps=int(max_steps),
            epochs=int(epochs),
            sigreg_weight=float(lam),
            seed=int(seed),
            batch_size=int(batch),
            checkpoint_every=int(every),
            threads=int(threads),
        )
    except UserError as e:
        ui.show_error(e)
        return
    st.session_state[MSG] = started  # (kind, text): started, or waiting in the queue
    st.session_state[W_RUN] = run.name  # the run picker is drawn below: not instantiated yet


def _series(run_dir, key: str):
    train, evals = jobs.read_metrics(run_dir)
    rows = evals if key in EVAL_KEYS else train
    xs = [r["step"] for r in rows if isinstance(r.get(key), int | float)]
    ys = [r[key] for r in rows if isinstance(r.get(key), int | float)]
    return xs, ys


def _curves(runs: list) -> object:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=2, cols=3, subplot_titles=[p[1] for p in PANELS], vertical_spacing=0.16
    )
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    for i, run in enumerate(runs):
        color = palette[i % len(palette)]
        for j, (key, _, log_y) in enumerate(PANELS):
            xs, ys = _series(run, key)
            if log_y:
                keep = [k for k, y in enumerate(ys) if y > 0]
                xs, ys = [xs[k] for k in keep], [ys[k] for k in keep]
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    name=run.name,
                    legendgroup=run.name,
                    showlegend=j == 0,
                    mode="lines+markers" if key in EVAL_KEYS else "lines",
                    line=dict(color=color, dash="solid" if i == 0 else "dash"),
                    marker=dict(size=5),
                ),
                row=j // 3 + 1,
                col=j % 3 + 1,
            )
    for j, (_, _, log_y) in enumerate(PANELS):
        if log_y:
            fig.update_yaxes(type="log", dtick=1, row=j // 3 + 1, col=j % 3 + 1)
    fig.update_xaxes(title_text="step", row=2)
    fig.update_layout(
        height=560, margin=dict(l=10, r=10, t=50, b=10), legend=dict(orientation="h", y=-0.12)
    )
    return fig


def _status_block(run, status: dict) -> None:
    label, icon, color = STATE_BADGES[status["state"]]
    st.badge(label, icon=icon, color=color)
    step, total = status["step"], status["total"]
    if total:
        st.progress(min(1.0, step / total), text=f"step {step} of {total}")
    m = status["last_metrics"] or {}
    ev = status["last_eval"] or {}
    c = st.columns(6)
    c[0].metric("Step", step)
    c[1].metric("Loss", f"{m['loss']:.4f}" if "loss" in m else "-")
    c[2].metric("Pred. loss", f"{m['pred_loss']:.4f}" if "pred_loss" in m else "-")
    c[3].metric("SIGReg", f"{m['sigreg']:.3f}" if "sigreg" in m else "-")
    c[4].metric("Emb. std (val)", f"{ev['emb_std_mean']:.3f}" if "emb_std_mean" in ev else "-")
    c[5].metric("Samples / s", f"{m['samples_per_s']:.0f}" if "samples_per_s" in m else "-")
    if status["foreign_active"]:
        st.caption(
            "metrics.jsonl changed in the last seconds: a training this lab did not start "
            "(e.g. `lewm train` in a terminal) is writing this run. Curves refresh every 2 s."
        )
    if status["running"]:
        started = time.strftime("%H:%M:%S", time.localtime(status["started"]))
        st.caption(f"pid {status['pid']}, started {started}. Curves refresh every 2 s.")
    if status["error"] and status["state"] != "running":
        (st.warning if status["state"] == "stopped" else st.error)(status["error"])


def _controls(run, status: dict) -> None:
    b1, b2, b3 = st.columns([1, 2, 1], vertical_alignment="bottom")
    stop = b1.button(
        "Stop (keeps a checkpoint)",
        key="train_stop",
        disabled=not status["running"],
        icon=":material/stop:",
    )
    target = _knob_input(
        b2,
        "Resume up to step",
        "max_steps",
        max(int(status["total"] or 0), int(status["step"]) + 100),
        key=f"train_resume_to_{run.name}",
    )
    resume = b3.button(
        "Resume",
        key="train_resume",
        disabled=status["running"] or status["foreign_active"] or not status["resumable"],
        icon=":material/replay:",
    )
    if stop:
        try:
            with st.spinner("Stopping: the trainer saves a checkpoint first..."):
                out = jobs.stop_training(run, timeout=120)
            st.session_state[MSG] = ("info", f"Stopped at step {out['step']} ({out['signal']}).")
        except UserError as e:
            st.session_state[MSG] = ("error", str(e))
        st.rerun()
    if resume:
        try:
            st.session_state[MSG] = lab_public.resume_training(
                run, max_steps=int(target), threads=_default_threads()
            )
        except UserError as e:
            st.session_state[MSG] = ("error", str(e))
        st.rerun()


def _monitor(run, compare: list) -> None:
    status = jobs.job_status(run)
    active = status["running"] or status["foreign_active"]
    was = st.session_state.get(WAS_RUNNING)
    st.session_state[WAS_RUNNING] = active
    if was and not active:
        st.rerun()  # the job ended: redraw the page (and stop polling)
    _status_block(run, status)
    _controls(run, status)
    train, _ = jobs.read_metrics(run)
    if not train and not any(jobs.read_metrics(r)[0] for r in compare):
        st.info("No metrics yet: the first row appears after the first training step.")
    else:
        st.plotly_chart(_curves([run, *compare]), key="train_curves")
    with st.expander("train.log (this job)"):
        st.code(status["log_tail"] or "(empty)", language=None)


# --------------------------------------------------------------------------- page
st.title("Train")
ui.explainer(
    """
Training minimises **prediction loss + lambda x SIGReg**: the predictor learns the next frame's
embedding from the current ones and the actions; SIGReg pushes the batch of embeddings towards
an isotropic Gaussian so that they cannot all collapse to one point.

- **Start** launches `lewm train` as a background process (one per run folder): it keeps going
  if you leave the page or close the browser. **Stop** interrupts it; the trainer saves a
  checkpoint first, and **Resume** continues from it with the same data order.
- **Curves** (from `runs/<name>/metrics.jsonl`): the losses every 10 steps; at each checkpoint
  the validation **collapse monitor**: the mean per-dimension std of the embeddings (near 0 =
  collapsed) and prediction loss / copy loss (copy = "the next embedding equals this one"; a
  collapsed model predicts trivially well, so both losses go to 0 together).
- **Compare**: overlay other runs (dashed). Train the same data with lambda = 0 next to the
  default 0.09: without SIGReg the prediction loss drops fast while the embedding std falls
  towards 0 -- the representation collapses.
- The lab preset trains a small CNN-encoder model on the CPU in minutes; `paper` is the
  published setting (hours on a GPU).
"""
)
if MSG in st.session_state:
    kind, text = st.session_state.pop(MSG)
    getattr(st, kind)(text)

_start_form(models.list_datasets())
lab_public.queue_panel(W_RUN, MSG)

st.subheader("Runs")
runs = models.list_runs()
if not runs:
    st.info(f"No run in {models.runs_dir()} yet: start one above.")
    st.stop()
names = [r.name for r in runs]
if st.session_state.get(W_RUN) not in names:
    wanted = st.query_params.get("run")
    st.session_state[W_RUN] = wanted if wanted in names else names[0]
r1, r2 = st.columns([1, 2])
chosen = r1.selectbox("Run", names, key=W_RUN)
if st.query_params.get("run") != chosen:
    st.query_params["run"] = chosen
st.session_state[W_COMPARE] = [
    n for n in st.session_state.get(W_COMPARE, []) if n in names and n != chosen
]
others = r2.multiselect(
    "Compare with", [n for n in names if n != chosen], key=W_COMPARE, placeholder="other runs"
)
run_dir = runs[names.index(chosen)]
compare_dirs = [runs[names.index(n)] for n in others]

first = jobs.job_status(run_dir)
polling = first["running"] or first["foreign_active"]
st.fragment(run_every=2 if polling else None)(_monitor)(run_dir, compare_dirs)

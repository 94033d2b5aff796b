"""Memory of a public deployment's other processes (docs/deploy.md sizes a Space with them).

Usage: ``python bench/deploy_memory.py [--train-s 120] [--skip-gradio]``.

Measures, each in a fresh process watched from outside (/proc VmRSS and VmHWM, MiB):
  gradio        `app/gradio_app.py` with its warm-up (every shipped model loaded), then one /plan
                per task with the fast CEM budget (300 x 10, 50 steps) and one /surprise,
                queued at once (the demo runs one at a time)
  training job  one job as public mode starts it: a dataset at the public cap (Two-Room,
                PUBLIC_MAX_FRAMES frames at 64 px), the lab preset, PUBLIC_JOB_THREADS thread,
                watched for --train-s seconds, then stopped (SIGINT); its clips/s, and the disk
                a visitor's dataset and run take
The Streamlit server itself: ``LEWM_PUBLIC=1 python bench/app.py --memory-sessions N``.
The last stdout line is a JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

from lab_server import ROOT, free_port, memory_mib, stop, wait_healthy  # noqa: E402

TASKS = ("tworoom", "pusht", "reacher", "cube")
LIMITS = ("PUBLIC_MAX_FRAMES", "PUBLIC_MAX_STEPS", "PUBLIC_JOB_THREADS")


def public_limits() -> dict[str, int]:
    """app/lab_public.py's limits, imported from app/ as the lab imports it."""
    code = "import json, lab_public as p; print(json.dumps({k: getattr(p, k) for k in %r}))"
    code %= (LIMITS,)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT / "app", capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def gradio_memory() -> dict:
    """The demo server's memory with every model loaded, and its peak after plans on each task."""
    from gradio_client import Client

    port = free_port()
    cmd = [sys.executable, "app/gradio_app.py", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(f"{url}/gradio_api/info", proc, 180, interval=0.3)
        client = Client(url, verbose=False)
        client.predict("tworoom", 0, 8, 1, 1, api_name="/plan")  # waits behind the warm-up
        time.sleep(20)  # the warm-up thread loads the other models meanwhile
        loaded = memory_mib(proc.pid)
        calls = [client.submit(t, 0, 300, 10, 50, api_name="/plan") for t in TASKS]
        calls.append(client.submit("pusht", 0, 8, 20, 10, api_name="/surprise"))
        for call in calls:
            call.result(timeout=900)
        after = memory_mib(proc.pid)
    finally:
        stop(proc)
    return {
        "gradio_models_loaded_rss_mib": round(loaded["VmRSS"], 1),
        "gradio_peak_mib": round(after["VmHWM"], 1),
    }


def training_memory(seconds: float) -> dict:
    """One public-sized training job: its peak memory, speed and the disk it takes."""
    limits = public_limits()
    with tempfile.TemporaryDirectory() as tmp:
        data, run = Path(tmp) / "d.h5", Path(tmp) / "run"
        episodes = limits["PUBLIC_MAX_FRAMES"] // 100
        lewm = [sys.executable, "-m", "lewm_core"]
        subprocess.run(
            [*lewm, "collect", "--env", "tworoom", "--episodes", str(episodes), "--steps", "100"]
            + ["--resolution", "64", "--out", str(data), "--quiet"],
            cwd=ROOT,
            check=True,
        )
        train = [*lewm, "train", "--data", str(data), "--out", str(run), "--preset", "lab"]
        train += ["--max-steps", str(limits["PUBLIC_MAX_STEPS"])]
        train += ["--threads", str(limits["PUBLIC_JOB_THREADS"])]
        proc = subprocess.Popen(train + ["--quiet"], cwd=ROOT, stdout=subprocess.DEVNULL)
        peak = {}
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and proc.poll() is None:
            peak = memory_mib(proc.pid) or peak
            time.sleep(1)
        proc.send_signal(signal.SIGINT)  # the trainer saves a checkpoint and exits
        proc.wait(timeout=300)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        speed = [r["samples_per_s"] for r in rows if "samples_per_s" in r]
        run_mb = sum(p.stat().st_size for p in run.iterdir()) / 1e6
        return {
            "job_peak_mib": round(peak["VmHWM"], 1) if peak else None,
            "job_clips_per_s": round(sum(speed[-5:]) / max(1, len(speed[-5:])), 1),
            "job_steps_done": max((r["step"] for r in rows), default=0),
            "dataset_at_cap_mb": round(data.stat().st_size / 1e6, 1),
            "run_folder_mb": round(run_mb, 1),
        }


def main(argv: list[str] | None = None) -> dict:
    """Run the measurements; print one line each and the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-s", type=float, default=120, help="seconds the job is watched")
    ap.add_argument("--skip-gradio", action="store_true", help="measure the training job only")
    args = ap.parse_args(argv)
    out = {"cpus": os.cpu_count(), "load_avg_1min_before": round(os.getloadavg()[0], 2)}
    if not args.skip_gradio:
        out.update(gradio_memory())
    out.update(training_memory(args.train_s))
    out["load_avg_1min_after"] = round(os.getloadavg()[0], 2)
    for key, value in out.items():
        print(f"{key:32s} {value}")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

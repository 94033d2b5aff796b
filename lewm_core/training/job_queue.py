"""A bounded queue of training jobs for a server shared by many visitors.

    JobQueue(limit)   at most `limit` `lewm train` jobs at once among those started through it;
                      later starts wait in first-come order, one job per owner

The lab's public mode (app/lab_public.py) keeps one per server process, an owner being a browser
session. The jobs themselves are `lewm_core.training.jobs` jobs: detached processes whose state is
on disk.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lewm_core.errors import UserError
from lewm_core.training import jobs


def _alive(run_dir: Path) -> bool:
    """Is the job recorded in `run_dir` still running?"""
    job = jobs.read_job(run_dir)
    return job is not None and jobs.pid_alive(job["pid"], job.get("proc_start"))


@dataclass(frozen=True)
class QueuedStart:
    """A start waiting in a `JobQueue`: `start_training(run_dir, **kwargs)` once a slot frees."""

    owner: str
    run_dir: Path
    kwargs: dict
    since: float


class JobQueue:
    """At most `limit` training jobs at once among those started through it; later starts wait
    in first-come order. One job per owner, running or waiting.

    For a server shared by many visitors (the lab's public mode keeps one per process; an owner
    is a browser session). `submit` starts at once when a slot is free and nobody waits, else
    queues; `advance`, called by anyone and often, starts waiting requests as slots free up and
    keeps each outcome (the Job, or the UserError of a start that failed) for `outcome`;
    `cancel` drops a waiting request (its visitor left). A slot is held while the job's process
    lives: a finished, stopped or killed job frees it. `limit` 0 refuses every start.
    Thread-safe, in memory: jobs started elsewhere (a `lewm train` in a terminal) are not
    counted.
    """

    def __init__(self, limit: int):
        if limit < 0:
            raise ValueError(f"limit must be 0 or more (got {limit})")
        self.limit = limit
        self._lock = threading.Lock()
        self._waiting: OrderedDict[str, QueuedStart] = OrderedDict()
        self._running: dict[str, Path] = {}  # owner -> run folder of its job
        self._outcomes: dict[str, jobs.Job | UserError] = {}

    def _prune(self) -> None:
        for owner, run_dir in list(self._running.items()):
            if not _alive(run_dir):
                del self._running[owner]

    def _start(self, request: QueuedStart) -> jobs.Job:
        job = jobs.start_training(request.run_dir, **request.kwargs)
        self._running[request.owner] = job.run_dir
        return job

    def submit(self, owner: str, run_dir: str | os.PathLike, **kwargs: Any) -> int:
        """Start `start_training(run_dir, **kwargs)` for `owner` now (returns 0) or queue it
        (returns its position, 1 = next).

        Raises UserError when the queue takes no jobs (limit 0), when `owner` already has a job
        running or waiting, and when the start would be refused (`check_start`, or the start
        itself).
        """
        if self.limit == 0:
            raise UserError("training jobs are switched off on this server")
        run_dir = Path(run_dir).absolute()
        jobs.check_start(
            run_dir, kwargs.get("data"), kwargs.get("resume", False), kwargs.get("threads")
        )
        with self._lock:
            self._prune()
            if owner in self._running:
                raise UserError(
                    f"your run '{self._running[owner].name}' is still training: stop it or wait "
                    "for it to finish (one job per visitor)"
                )
            if owner in self._waiting:
                position = list(self._waiting).index(owner) + 1
                raise UserError(
                    f"your run '{self._waiting[owner].run_dir.name}' is already waiting in the "
                    f"queue (number {position}); cancel it to start another"
                )
            self._outcomes.pop(owner, None)
            request = QueuedStart(owner, run_dir, dict(kwargs), time.time())
            if not self._waiting and len(self._running) < self.limit:
                self._start(request)
                return 0
            self._waiting[owner] = request
            return len(self._waiting)

    def advance(self) -> None:
        """Start waiting requests, first come first, while slots are free."""
        with self._lock:
            self._prune()
            while self._waiting and len(self._running) < self.limit:
                owner, request = self._waiting.popitem(last=False)
                try:
                    self._outcomes[owner] = self._start(request)
                except UserError as e:
                    self._outcomes[owner] = e

    def position(self, owner: str) -> int | None:
        """`owner`'s place in the queue (1 = next), None when it has nothing waiting."""
        with self._lock:
            names = list(self._waiting)
            return names.index(owner) + 1 if owner in self._waiting else None

    def waiting(self, owner: str) -> QueuedStart | None:
        """`owner`'s waiting request, if any."""
        with self._lock:
            return self._waiting.get(owner)

    def cancel(self, owner: str) -> bool:
        """Drop `owner`'s waiting request; True if there was one."""
        with self._lock:
            self._outcomes.pop(owner, None)
            return self._waiting.pop(owner, None) is not None

    def outcome(self, owner: str) -> jobs.Job | UserError | None:
        """What became of `owner`'s request since it left the queue (once; then None)."""
        with self._lock:
            return self._outcomes.pop(owner, None)

    def counts(self) -> tuple[int, int]:
        """(jobs running, requests waiting)."""
        with self._lock:
            self._prune()
            return len(self._running), len(self._waiting)

"""Atomic file writes: write to a temporary file in the same folder, then rename over the target.

A reader never sees a half-written file, and an interrupted write leaves the previous file intact.

The temporary is named `.<target name>.tmp-<pid>-<random><suffix>`: the writer's process id is in
the name, so `remove_stale_temporaries` can tell the leftovers of a killed writer (SIGKILL, power
loss: no `except` clause runs) from the temporaries of a writer that is still at work in the same
folder (a decoder being saved into a run folder while its training resumes, two collections into
one data folder).
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_MARK = ".tmp-"
_TMP_PID = re.compile(re.escape(TMP_MARK) + r"(\d+)-")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it is renamed onto `target`.

    On any exception (KeyboardInterrupt included) the temporary file is removed and `target`
    is left as it was. The renamed file gets the usual mode (0666 less the umask), whatever
    mode the writer created it with.
    """
    target = Path(target)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}{TMP_MARK}{os.getpid()}-", suffix=target.suffix, dir=target.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp_path
        # mkstemp makes 0600, and some writers (safetensors' save_file) create the file anew
        # with 0600: give the finished file the usual mode just before it becomes visible.
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes(target: str | os.PathLike, data: bytes) -> None:
    """Atomically write `data` to `target`."""
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def jsonable(x: Any) -> Any:
    """`x` with numpy scalars as Python numbers and NaN/Inf as None (strict JSON)."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [jsonable(v) for v in x]
    if hasattr(x, "item") and getattr(x, "ndim", 1) == 0:
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_json(target: str | os.PathLike, obj: Any) -> None:
    """Atomically write `obj` as indented JSON to `target`."""
    write_bytes(target, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def _writer_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a process of another user: not ours to judge
    try:  # a zombie has finished writing
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def remove_stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Delete the temporaries that killed writers left in `folder`; return what was removed.

    A temporary whose writer (the pid in its name) is still running is kept: it is being
    written. Names without a pid (written by an older version) count as stale. `name` limits
    the clean-up to the temporaries of one target file (e.g. "tworoom.h5").
    """
    removed = []
    pattern = f".{glob.escape(name)}{TMP_MARK}*" if name is not None else f".*{TMP_MARK}*"
    for p in Path(folder).glob(pattern):
        pids = _TMP_PID.findall(p.name)  # the last one is the writer's (a name may hold ".tmp-")
        if pids and _writer_alive(int(pids[-1])):
            continue
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p)
    return removed

"""Two runs into one ``--out`` at once (a second terminal, a cron job overlapping a manual run): a lock file per case.

A run takes ``<out>/.<case>_predict.lock`` before it reads a case and removes it once the case is written (or failed).
The lock is created atomically (``O_CREAT | O_EXCL``: of two runs exactly one gets it) and says who holds it: process,
host, run and since when. Its holder touches it every :data:`BEAT_S` seconds, so a lock is *stale* (its holder died:
killed, its machine gone) when it is older than :data:`STALE_S` seconds, or at once when its process, on this host, no
longer runs; a stale lock is taken over. The run that finds a case held by another live run does its other cases
first, then waits for that one and skips it once the other run finished it (or computes it, when that run did not).
A lock of the same cohort run (a Dask task run again after its worker died) is that run's own: taken over.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

LOCK_SUFFIX = "_predict.lock"
BEAT_S = 60.0  # the holder touches its lock this often
STALE_S = 600.0  # a lock untouched this long is a dead run's


def lock_path(out: str | os.PathLike, src: str | os.PathLike, name: str | None = None) -> Path:
    from ..results import case_name

    return Path(out) / f".{case_name(src, name)}{LOCK_SUFFIX}"


@dataclass
class Holder:
    """Who holds a lock (what its file says; empty while its holder is still writing it)."""

    pid: int = 0
    host: str = ""
    run: str = ""
    since: str = ""
    token: str = ""

    def describe(self) -> str:
        if not self.pid:
            return "another attnseg run"
        return f"another attnseg run (process {self.pid} on {self.host}, since {self.since})"


def _read(path: Path) -> Holder | None:
    """The lock's holder; None when there is no lock."""
    try:
        data = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return Holder()
    if not isinstance(data, dict):
        return Holder()
    return Holder(**{k: data[k] for k in ("pid", "host", "run", "since", "token") if k in data})


def _alive(pid: int) -> bool:
    if os.name == "nt":  # (os.kill would end it there): told by the lock's age alone
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def is_stale(path: Path, holder: Holder, now: float | None = None) -> bool:
    """Whether the lock at ``path`` is a dead run's: untouched for :data:`STALE_S` s, or its process (on this host) gone."""
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return True
    if age > STALE_S:
        return True
    return bool(holder.pid) and holder.host == socket.gethostname() and not _alive(int(holder.pid))


class CaseLock:
    """The lock of one case (or of the summary) in ``out``: :meth:`acquire` (or ``with``), :meth:`release`."""

    def __init__(self, path: Path, run: str = "") -> None:
        self.path = Path(path)
        self.run = run
        self.token = uuid.uuid4().hex
        self.held = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _content(self) -> str:
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "run": self.run, "token": self.token,
                           "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds")})

    def try_acquire(self) -> Holder | None:
        """Take the lock; return None when taken, else who holds it (a live run other than this one)."""
        holder = Holder()
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read(self.path)
                if holder is None:
                    continue  # (released meanwhile)
                if self.run and holder.run == self.run:  # this run's own (a Dask task run again): taken over
                    from .._files import atomic_write

                    atomic_write(self.path, lambda tmp: Path(tmp).write_text(self._content()))
                    return self._started()
                if not is_stale(self.path, holder):
                    return holder
                if _read(self.path) == holder:  # (not taken over by a third run meanwhile)
                    try:
                        os.unlink(self.path)
                    except FileNotFoundError:
                        pass
                continue
            with os.fdopen(fd, "w") as f:
                f.write(self._content())
            return self._started()
        return holder

    def _started(self) -> None:
        self.held = True
        self._stop.clear()
        self._beat = threading.Thread(target=self._touch, name="attnseg-lock", daemon=True)
        self._beat.start()
        return None

    def _touch(self) -> None:
        while not self._stop.wait(BEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def acquire(self, wait: float = float("inf"), poll: float = 0.5, cancelled=lambda: False) -> Holder | None:
        """:meth:`try_acquire`, polling up to ``wait`` seconds (or until ``cancelled()``) while a live run holds it."""
        end = time.monotonic() + wait
        while (holder := self.try_acquire()) is not None and time.monotonic() < end and not cancelled():
            time.sleep(poll)
        return holder

    def release(self) -> None:
        if not self.held:
            return
        self._stop.set()
        self.held = False
        holder = _read(self.path)
        if holder is not None and holder.token == self.token:  # (never another run's: ours was taken as stale)
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> CaseLock:
        self.acquire(wait=120.0)
        return self

    def __exit__(self, *exc) -> None:
        self.release()

"""Two runs into one ``--out`` at once (a second terminal, a cron job overlapping a manual run): a lock file per case.

A run takes ``<out>/.<case>_predict.lock`` before it reads a case and removes it once the case is written (or failed).
The lock is created atomically (``O_CREAT | O_EXCL``: of two runs exactly one gets it) and says who holds it: process
(with its start time), host, run and since when. A lock is *stale* (its holder died) when its process, on this host, no
longer runs (or its number now belongs to a process started later); a lock of this host's live process is never
stale, however long its case takes or the process is paused (Ctrl+Z, a suspended laptop or virtual machine). A lock of
another host can only be judged by its age: its holder touches it every :data:`BEAT_S` seconds, and one untouched for
:data:`STALE_S` seconds is a dead machine's. A stale lock is taken over, and the takeover is itself exclusive: it is
made while holding ``<out>/.attnseg_predict.guard`` (``O_EXCL`` too, held for a read and a rename), which a release
holds too, so of two runs finding the same stale lock at the same instant exactly one takes it, and the other finds
it held. The run that finds a case held by another live run does its other cases first, then waits for that one and
skips it once the other run finished it (or computes it, when that run did not). A lock of the same cohort run (a
Dask task run again after its worker died) is that run's own: taken over.
"""

from __future__ import annotations

import contextlib
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
GUARD_NAME = ".attnseg_predict.guard"
# module values, read when used: tests (and a site with a slow shared file system) may change them
BEAT_S = 60.0  # the holder touches its lock this often
STALE_S = 600.0  # a lock of another host untouched this long is a dead machine's
GUARD_WAIT_S = 10.0  # how long a takeover or release waits for the guard (held for milliseconds)
GUARD_STALE_S = 60.0  # a guard of another host older than this was left by a run that died holding it

_HELD: set[str] = set()  # the tokens of the locks this process holds (a lock naming this process but not held: stale)


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
    started: float = 0.0  # when its process started (0: not known): a process that reused its number is not it

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
    return Holder(**{k: data[k] for k in ("pid", "host", "run", "since", "token", "started") if k in data})


def _process_start(pid: int) -> float:
    """When process ``pid`` started (seconds since the epoch); 0.0 when not known, -1.0 when it does not run."""
    try:
        import psutil
    except ImportError:  # (a dependency of distributed, so normally there)
        return 0.0
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:  # (ended, not yet reaped by its parent)
            return -1.0
        return float(process.create_time())
    except psutil.NoSuchProcess:
        return -1.0
    except Exception:  # (access denied, ...): not known
        return 0.0


def _alive(pid: int, started: float = 0.0) -> bool | None:
    """Whether process ``pid`` of this host runs (and is the one that started at ``started``, when given); None where
    that cannot be told (Windows without psutil)."""
    if pid == os.getpid():
        return None  # (this process: told by the locks it holds, see is_stale)
    start = _process_start(pid)
    if start < 0:
        return False
    if start > 0:
        return not started or abs(start - float(started)) < 1.0
    if os.name == "nt":  # (os.kill would end it there)
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def is_stale(path: Path, holder: Holder, now: float | None = None, limit: float | None = None) -> bool:
    """Whether the lock at ``path`` is a dead run's: its process (on this host) gone, or, where that cannot be told (a
    lock of another host), untouched for ``limit`` (:data:`STALE_S`) seconds. A live process of this host keeps its
    lock however long it works or is paused."""
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
    except FileNotFoundError:
        return True
    if holder.pid and holder.host == socket.gethostname():
        if int(holder.pid) == os.getpid():
            return holder.token not in _HELD  # (a lock of this process that it does not hold: a former process's)
        alive = _alive(int(holder.pid), float(holder.started or 0.0))
        if alive is False:
            return True
        if alive and holder.started and _process_start(int(holder.pid)) > 0:  # (its start time read now and matched:
            return False  # the very process that took it, live however old)
        # a lock without its process's start time (written by an earlier version), or whose process's start time cannot
        # be read now (psutil missing, access denied: macOS), whose number runs: maybe that process, maybe another that
        # reused the number after a crash; judged by its age, as before (its live holder touches it every BEAT_S
        # seconds), so a run never waits forever on a dead run's lock
    return age > (STALE_S if limit is None else limit)


@contextlib.contextmanager
def _guard(folder: Path, wait: float | None = None):
    """Hold ``folder``'s takeover guard (yield True), or yield False after ``wait`` (:data:`GUARD_WAIT_S`) seconds of
    another run holding it. A guard left by a dead run (its process gone, or :data:`GUARD_STALE_S` old) is removed."""
    path = Path(folder) / GUARD_NAME
    token = uuid.uuid4().hex
    end = time.monotonic() + (GUARD_WAIT_S if wait is None else wait)
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(path)
            if holder is not None and is_stale(path, holder, limit=GUARD_STALE_S) and _read(path) == holder:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                continue
            if time.monotonic() > end:
                yield False
                return
            time.sleep(0.005)
            continue
        break
    _HELD.add(token)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "token": token,
                                "started": _process_start(os.getpid())}))
        yield True
    finally:
        _HELD.discard(token)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


class CaseLock:
    """The lock of one case (or of the summary) in ``out``: :meth:`acquire` (or ``with``), :meth:`release`.
    ``beat``: seconds between touches (:data:`BEAT_S` by default)."""

    def __init__(self, path: Path, run: str = "", beat: float | None = None) -> None:
        self.path = Path(path)
        self.run = run
        self.beat = beat
        self.token = uuid.uuid4().hex
        self.held = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _content(self) -> str:
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "run": self.run, "token": self.token,
                           "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                           "started": _process_start(os.getpid())})

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
                own = bool(self.run) and holder.run == self.run  # this run's own (a Dask task run again): taken over
                if not own and not is_stale(self.path, holder):
                    return holder
                taken = self._take_over(holder, own)
                if taken is False:
                    continue  # (released or taken by another run meanwhile: look again)
                return taken
            _HELD.add(self.token)
            with os.fdopen(fd, "w") as f:
                f.write(self._content())
            return self._started()
        return holder

    def _take_over(self, holder: Holder, own: bool) -> Holder | None | bool:
        """Replace the lock ``holder`` left (stale, or this run's own) with this one's, holding the guard: None when
        taken; the holder when the guard stayed busy or the lock is live after all; False when the lock changed."""
        from .._files import atomic_write

        with _guard(self.path.parent) as guarded:
            if not guarded:
                return holder
            now = _read(self.path)
            if now is None or now != holder:
                return False
            if not own and not is_stale(self.path, now):
                return now
            _HELD.add(self.token)
            atomic_write(self.path, lambda tmp: Path(tmp).write_text(self._content()))  # (a rename: never absent)
            return self._started()

    def _started(self) -> None:
        self.held = True
        self._stop.clear()
        self._beat = threading.Thread(target=self._touch, name="attnseg-lock", daemon=True)
        self._beat.start()
        return None

    def _touch(self) -> None:
        while not self._stop.wait(BEAT_S if self.beat is None else self.beat):
            holder = _read(self.path)
            if holder is None or holder.token != self.token:
                return  # (taken over: another run's lock is not kept fresh by this one)
            try:
                os.utime(self.path)
            except OSError:
                pass

    def owned(self) -> bool:
        """Whether this run still holds the lock (not taken over by another run as stale meanwhile)."""
        holder = _read(self.path)
        return self.held and holder is not None and holder.token == self.token

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
        with _guard(self.path.parent):  # (not between another run's look at this lock and its takeover)
            holder = _read(self.path)
            if holder is not None and holder.token == self.token:  # (never another run's: ours was taken as stale)
                self.path.unlink(missing_ok=True)
        _HELD.discard(self.token)

    def __enter__(self) -> CaseLock:
        self.acquire(wait=120.0)
        return self

    def __exit__(self, *exc) -> None:
        self.release()

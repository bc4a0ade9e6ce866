"""One training run at a time per output folder.

Two runs into one ``--out`` (a second terminal, a script and napari's Fine-tune tab, two napari windows proposing
the same new folder) both trained and both ended with "checkpoint: OUT/best.safetensors": the folder kept the one
that saved last, its log rewritten by the other, and nothing said so (a run's model was lost). The run holds an
advisory lock on the folder itself (``flock`` on the directory: no lock file among the model's files) from the
check of ``--out`` to its last save; a second run is refused at once, naming the folder. Under torchrun only rank 0
locks (the ranks of one run share the folder). Within one process the lock is per thread: the CLI's check and its
run (one thread) share it; two napari panels (two worker threads) do not. A no-op where ``flock`` is missing.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from ..errors import InputError

_HELD: dict[str, tuple[int, int, int, str]] = {}  # resolved folder -> (thread, directory fd, holds, top folder made)
_GUARD = threading.Lock()


def _key(out: Path) -> str:
    return str(out.expanduser().resolve())


def busy(out: str | os.PathLike) -> bool:
    """True while a run (this process's other thread, or another process) holds ``out``'s lock."""
    out = Path(out).expanduser()
    with _GUARD:
        if _key(out) in _HELD:
            return True
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return False
    try:
        fd = os.open(out, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    except OSError:  # (no locks on this file system)
        return False
    finally:
        os.close(fd)


def acquire(out: str | os.PathLike) -> None:
    """Take ``out``'s lock for this thread (creating the folder), or raise :class:`InputError` when another run
    holds it. Taken again by its thread, it is counted; :func:`release` as often frees it (process exit too)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return
    if os.environ.get("RANK", "0") != "0":  # a torchrun rank other than 0: rank 0 holds it for the run
        return
    out = Path(out).expanduser()
    full = Path(os.path.abspath(out))  # (the first folder it makes: removed with the run's own if it never began)
    created = next((str(f.resolve()) for f in [*reversed(full.parents), full] if not f.exists()), "")
    out.mkdir(parents=True, exist_ok=True)
    key, me = _key(out), threading.get_ident()
    with _GUARD:
        held = _HELD.get(key)
        if held is not None and held[0] == me:
            _HELD[key] = (me, held[1], held[2] + 1, held[3])
            return
        if held is None:
            fd = os.open(out, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # (held by another process)
                os.close(fd)
            except OSError:  # no locks on this file system (some network shares): the run goes on unlocked
                os.close(fd)
                return
            else:
                _HELD[key] = (me, fd, 1, created)
                return
    raise InputError(f"Another training run is writing to {out} (attnseg train/finetune in another terminal, or "
                     "napari's Fine-tune tab): two runs in one folder replace each other's model. Choose another "
                     "output folder, or wait until that run has ended.")


def release(out: str | os.PathLike) -> None:
    """Undo one :func:`acquire` of this thread; the last one frees the lock, and removes the folder when it created
    it and the run never began (it failed in its setup: a wrong device, a dataset it cannot read)."""
    key = _key(Path(out))
    with _GUARD:
        held = _HELD.get(key)
        if held is None or held[0] != threading.get_ident():
            return
        if held[2] > 1:
            _HELD[key] = (held[0], held[1], held[2] - 1, held[3])
            return
        del _HELD[key]
        os.close(held[1])  # (closing the descriptor frees the flock)
    folder, top = Path(key), held[3]
    while top and folder.is_relative_to(top):  # (the folder, then the parents made with it: runs/a/b left runs/a)
        try:
            folder.rmdir()
        except OSError:  # not empty: a run's files stay
            return
        folder = folder.parent


def keep_folder(out: str | os.PathLike) -> None:
    """The run has begun writing in ``out`` (the trainer's first step): the folder stays when it ends, even empty, as
    a run's folder always did; only one made for a run that failed before it is removed by :func:`release`."""
    key = _key(Path(out))
    with _GUARD:
        if (held := _HELD.get(key)) is not None:
            _HELD[key] = (*held[:3], "")


@contextlib.contextmanager
def run_lock(out: str | os.PathLike) -> Iterator[None]:
    """Hold ``out``'s lock for the ``with`` block (:func:`acquire`, then :func:`release`)."""
    acquire(out)
    try:
        yield
    finally:
        release(out)

"""File and machine helpers shared by the writers, the trainer and the benchmarks."""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path


def umask_permissions(path: str | os.PathLike) -> None:
    """Give a temporary file (created 0600 by mkstemp) the permissions a normal file would get."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def atomic_write(path: str | os.PathLike, writer: Callable[[str], object]) -> Path:
    """Call ``writer(tmp)`` on a temporary file beside ``path``, then rename it into place.

    Readers see the old file or the new one, never half of it; the temporary file keeps the
    target's suffix (``.nii.gz``, ``.tif``) because some writers choose the format from it, in lower case
    (nibabel cannot tell the type of ``x.tmp.GZ`` for a ``scan.NII.GZ``, nor of a mixed-case ``.Nii.gz``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if path.name.lower().endswith(".nii.gz") else path.suffix.lower()
    fd, tmp = tempfile.mkstemp(prefix=f".{_fitting(path, f'.XXXXXXXX.tmp{suffix}')}.", suffix=f".tmp{suffix}",
                               dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        umask_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def name_max(folder: str | os.PathLike) -> int:
    """The longest file name, in bytes, that ``folder``'s file system allows (255 where it does not say)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):  # (Windows has no pathconf; a folder not made yet)
        return 255


def _fitting(path: Path, tail: str) -> str:
    """``path.name`` cut (on a character boundary) so that '.' + it + ``tail`` fits its file system's name limit: a
    name that fits (e.g. 250 bytes of Japanese) made a temporary name that did not ("File name too long")."""
    room = name_max(path.parent) - len(tail.encode()) - 2
    name = path.name.encode()
    return path.name if len(name) <= room else name[:max(room, 1)].decode(errors="ignore")


def describe_machine() -> str:
    """CPU model, core count and torch version, for model cards and benchmark tables."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"

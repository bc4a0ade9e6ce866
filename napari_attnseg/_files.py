"""File helpers shared by every writer."""

from __future__ import annotations

import os


def umask_permissions(path: str | os.PathLike) -> None:
    """Give a temporary file (created 0600 by mkstemp) the permissions a normal file would get."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)

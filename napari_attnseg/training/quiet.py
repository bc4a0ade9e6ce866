"""The engine's warnings during a training run: each kind once. The run segments the same images again and again
(the start model's validation, the false-positive search, each epoch's validation), and ``predict`` logs its
warnings every time: nuclei-2d fine-tuned on CT slices logged "Most of this image is bright..." for every one."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def engine_warnings_once() -> Iterator[None]:
    """Within the block, on this thread, each engine warning is logged once (numbers aside: another slice's)."""
    seen: set[str] = set()
    me, log = threading.get_ident(), logging.getLogger("napari_attnseg.inference.engine")

    def once(record: logging.LogRecord) -> bool:
        kind = re.sub(r"\d+(\.\d+)?", "#", record.getMessage())
        return record.thread != me or (kind not in seen and not seen.add(kind))

    log.addFilter(once)
    try:
        yield
    finally:
        log.removeFilter(once)

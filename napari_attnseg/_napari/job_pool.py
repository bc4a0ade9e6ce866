"""Where the panels' long jobs (a Segment run, a fine-tuning run) run: napari's thread pool, with one more
thread for as long as each runs.

napari's ``thread_worker`` starts every worker on Qt's global thread pool, whose size is the number of CPU
cores. A fine-tuning run holds one of its threads for its whole budget (minutes) and a Segment run on a CT one
more: on a 2-core machine the Correct tab's Export, its helpers and edit counts, and the click model then
waited, silently, behind them (their busy bars shown, nothing happening). A long job brings its own thread.
"""

from __future__ import annotations


def start_long(worker) -> None:
    """Start ``worker`` (a napari/superqt worker) on the global pool, grown by one thread until it finishes."""
    from qtpy.QtCore import QThreadPool

    pool = QThreadPool.globalInstance()
    pool.setMaxThreadCount(pool.maxThreadCount() + 1)
    worker.finished.connect(lambda: pool.setMaxThreadCount(max(1, pool.maxThreadCount() - 1)))
    worker.start()

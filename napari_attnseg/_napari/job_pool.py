"""Where the panels' jobs run: napari's thread pool, with one more thread for as long as a long job runs, and
workers that napari does not keep once they are done.

napari's ``thread_worker`` starts every worker on Qt's global thread pool, whose size is the number of CPU
cores. A fine-tuning run holds one of its threads for its whole budget (minutes) and a Segment run on a CT one
more: on a 2-core machine the Correct tab's Export, its helpers and edit counts, and the click model then
waited, silently, behind them (their busy bars shown, nothing happening). A long job brings its own thread.

napari's ``thread_worker`` also lists each worker in the window's task list, which napari 0.9 never empties: the
worker stayed for the whole session, and with it everything its functions hold (the image and the mask of a
Segment run, a click, an export). A worklist of cases in one session kept every case's image in memory after it
was closed. :func:`thread_worker` makes napari's workers (their errors and warnings go to napari's
notifications as before) without that list.
"""

from __future__ import annotations

import functools
import inspect


def thread_worker(function=None, start_thread: bool = False, ignore_errors: bool = False):
    """napari's ``thread_worker`` decorator (its FunctionWorker / GeneratorWorker: errors and warnings raised in the
    worker go to napari's notifications) without napari's task list."""
    from napari.qt.threading import FunctionWorker, GeneratorWorker

    def make(fn):
        kind = GeneratorWorker if inspect.isgeneratorfunction(fn) else FunctionWorker

        @functools.wraps(fn)
        def create(*args, **kwargs):
            worker = kind(fn, *args, **kwargs)
            if not ignore_errors:  # (as napari's: an error is raised again on the GUI thread)
                worker.errored.connect(_reraise)
            if start_thread:
                worker.start()
            return worker

        return create

    return make if function is None else make(function)


def _reraise(exc: BaseException) -> None:
    raise exc


def start_long(worker) -> None:
    """Start ``worker`` (a napari/superqt worker) on the global pool, grown by one thread until it finishes."""
    from qtpy.QtCore import QThreadPool

    pool = QThreadPool.globalInstance()
    pool.setMaxThreadCount(pool.maxThreadCount() + 1)
    worker.finished.connect(lambda: pool.setMaxThreadCount(max(1, pool.maxThreadCount() - 1)))
    worker.start()

"""The Segment panel's run: the worker that predicts off the GUI thread, its progress, Cancel, and what its
results do when they arrive. :class:`SegmentJob` is a mixin of :class:`~.segment_widget.SegmentWidget`.

A run takes what it needs when Run is pressed (the image, the model, the options, the model's list label):
choosing another image, model or option while it runs prepares the next run and changes nothing in this
one, and its messages name what it used. Its results go to the image it segmented (followed through a
rename; not added when that layer was removed). A run is one long job: it brings its own thread
(:func:`~.job_pool.start_long`), so the Correct tab's export and helpers never wait behind it.
"""

from __future__ import annotations

import numpy as np
from napari.utils import progress as napari_progress

from ..cohort.cases import fill_slices
from ..data.dicom import inserted_slices
from ..errors import AttnSegError, Cancelled
from ..inference import CancelToken, iter_predict
from ..layers import prediction_layers
from ._common import (
    add_grey_layer,
    error_message,
    grey_name,
    grey_of_layer,
    is_deleted,
    is_time_axis,
    layer_array,
    notify_error,
    notify_info,
    notify_warning,
    placement_of,
)
from .job_pool import start_long, thread_worker


def model_colours(layer, model) -> np.ndarray | None:
    """The (C, ...) image a model of C > 1 channels reads from an RGB(A) layer: what ``attnseg predict`` gives it for
    the same picture (:func:`~napari_attnseg.cohort.inputs.pick_channel`, after the constant alpha its reader drops:
    the colours for a model of 3, and that alpha put back for one of 4, trained on opaque RGBA pictures). The tab sent
    every RGB layer to its grey (a model of colours was refused it). None, the user told why, when it cannot run."""
    from ..cohort.inputs import pick_channel
    from ..data.alpha import drop_flat_alpha
    from ..data.volume import Volume

    rgb, cin, what = np.asarray(layer_array(layer)), int(model.in_channels), f"Layer {layer.name!r}"
    meta = {"axes": "ZYX"[-layer.ndim:] + "S"}
    data, dropped = drop_flat_alpha(rgb, layer.name, meta)  # (as the picture's reader: an opaque alpha carries nothing)
    if cin not in (3, 4):  # (pick_channel's "--channel K" is the CLI's way out)
        notify_error(f"{what} is a picture of {rgb.shape[-1]} colour samples and the model reads {cin} channels: choose "
                     "a model that reads its colours or one channel.")
        return None
    try:
        vol = pick_channel(Volume(data, tuple(abs(float(s)) for s in layer.scale), None, meta), None, cin, what,
                           dims=getattr(model, "spatial_dims", None))
    except AttnSegError as exc:
        notify_error(str(exc))
        return None
    if note := vol.meta.get("note") or dropped:  # (the alpha dropped, or put back for a model of 4 channels)
        notify_info(f"{layer.name}: {str(note).rstrip('.')}.")
    return np.asarray(vol.data)


class _Failed:
    """An expected failure carried back from the worker as a value."""

    def __init__(self, error: Exception, named: bool = False):
        self.error, self.named = error, named  # named: its message names the layer already (not said twice)


def _prepared(model, pred, name: str, where) -> list[tuple]:
    """The result layers' data and options (:func:`~napari_attnseg.layers.prediction_layers`), made on the worker:
    hashing the mask, the heatmaps' help and resampling took the GUI thread 0.1-0.2 s on a 6000 x 6000 image.
    napari's table of layer features (pandas, which napari imports the first time a layer gets ``features``: the
    mask's class names) is loaded here too: 0.6 s of the 1.4 s that the first run's mask stalled napari's window."""
    try:
        from napari.layers.utils.layer_utils import pd

        _ = pd.DataFrame  # (napari's lazy pandas: the attribute imports it)
    except (ImportError, AttributeError):  # another napari: it imports it on the GUI thread, as before
        pass
    return prediction_layers(model, pred, name, where)


def _size_note(pred, model) -> str:
    """The status's word on objects far from the model's size (the run's warning, a notification gone in seconds: the
    panel said only "121 tiles on cpu in 1.7 s" for nuclei twice the model's size)."""
    from ..inference.object_size import FOUND_KEY, SIZE_WARNING

    found, trained = pred.params.get(FOUND_KEY), getattr(getattr(model, "card", None), "object_diameter", None)
    if not found or not trained or not any(SIZE_WARNING in w for w in pred.warnings):
        return ""
    return (f"; objects found about {found:.0f} px wide, the model learnt {float(trained):.0f} px: 'Estimate the size "
            "and run' segments them at the model's size")


class SegmentJob:
    """Needs the panel's form (``run_button``, ``estimate_button``, ``cancel_button``, ``progress_bar``,
    ``status``, ``model_combo``), ``viewer``, ``_tokens``, ``_show`` and ``run_done``."""

    def running(self) -> bool:
        """A run is going (from Run until its last layer is shown, or it failed or was cancelled)."""
        return not self.run_button.enabled

    def _start_job(self, layer, model, kwargs: dict, image: np.ndarray | None = None):
        token = self._token = self._tokens[0] = CancelToken()  # (this run's: the worker never reads self._token)
        label = self.model_combo.value  # the model's name in the list, for this run's messages
        # an RGB layer for a model of one channel: its grey (colour deconvolution, 4 s of a 6000 x 6000 slide) is
        # computed on the worker and added as its layer with the results, which go to it (_common.grey_layer_of)
        rgb = layer if image is None and getattr(layer, "rgb", False) and int(model.in_channels) == 1 else None
        # a pyramid: its full-resolution level; a picture: the colours a model of colours reads (model_colours)
        image, name = layer_array(layer) if image is None else image, layer.name
        where = placement_of(layer)
        # the source's file geometry travels with the results, so the writers can restore it
        # (its NIfTI header codes too: a mask saved after its image was closed was written with sform code 1, not 2)
        geometry = {k: layer.metadata[k] for k in ("affine", "spacing", "source_path", "nifti") if k in layer.metadata}
        geometry["attnseg_source_uid"] = layer.unique_id  # the Correct tab pairs the mask with this very layer
        # a DICOM series' slices inserted for missing images: the model sees their neighbours, the layer stays as read
        read_as = {k: layer.metadata[k] for k in ("format", "warning", "source_path", "inserted_slices") if k in layer.metadata}
        bar = napari_progress(total=1, desc=f"Segmenting {name}")

        @thread_worker(start_thread=False, ignore_errors=True)
        def work():
            # expected failures (bad input, Cancel) come back as values, not as event-loop exceptions
            data, found, called = image, None, name
            if rgb is not None:
                try:
                    found = grey_of_layer(np.asarray(image), name, label)
                except ValueError as exc:  # (its message names the layer: "Layer 'slide' is RGB ...")
                    return _Failed(AttnSegError(str(exc)), named=True)
                data, called = found[0], grey_name(name, found[1])
            elif np.ndim(data) == 3 and (gone := inserted_slices(read_as, int(np.shape(data)[0]))):
                data = fill_slices(np.asarray(data), gone)  # (not a black slab across the volume: cohort.cases)
            gen = iter_predict(model, data, cancel=token, **kwargs)
            while True:
                try:
                    done, total = next(gen)
                except StopIteration as stop:
                    # Cancel pressed after the last tile (the bar full: the checks and the layers' data take
                    # 1-1.5 s on a 6000 x 6000 mosaic) stops the run too, instead of adding its results anyway
                    if token.cancelled:
                        return _Failed(Cancelled("Prediction cancelled; no layer was added."))
                    prepared = _prepared(model, stop.value, called, where)
                    if token.cancelled:
                        return _Failed(Cancelled("Prediction cancelled; no layer was added."))
                    return stop.value, prepared, found
                except AttnSegError as exc:
                    return _Failed(exc)  # (superqt re-raises an exception returned as is)
                yield done, total

        worker = work()

        def on_progress(value):
            if is_deleted(self):  # the viewer closed while this ran
                return
            done, total = value
            bar.total = total
            bar.n = done
            bar.refresh()
            self.progress_bar.max = total
            self.progress_bar.value = done

        def finish():
            bar.close()
            if is_deleted(self):  # the viewer closed while this ran
                return
            if self.worker is worker:  # (its closures hold the image's data: a closed case stayed in memory)
                self.worker = None
            self.cancel_button.enabled = False
            if not self._showing:  # failed or cancelled; otherwise the last layer shown re-enables Run
                self._finish_run(False)

        def on_done(result):
            nonlocal name, layer
            if is_deleted(self):  # the viewer closed while this ran
                return
            if isinstance(result, _Failed):
                on_error(result.error, result.named)
                return
            if token.cancelled:  # pressed while the results were on their way to this thread
                on_error(Cancelled("Prediction cancelled; no layer was added."))
                return
            pred, prepared, found = result
            if layer not in self.viewer.layers:  # results without their image would pair with another one
                self.status.value = f"{name} was removed while it was segmented: its results were not added."
                notify_warning(self.status.value)
                return  # (finish() ends the run)
            if found is not None:  # the picture's grey: its layer, which the results, corrections and export use
                shown = self.current_layer() is layer  # (another image chosen meanwhile: the next run's, kept)
                layer = add_grey_layer(self.viewer, layer, found)
                name, geometry["attnseg_source_uid"] = grey_name(name, found[1]), layer.unique_id
                if shown:
                    self.refresh_layers(prefer=layer.name)
            prepared = prepared if layer.name == name else None  # renamed while it ran: named (and linked) after it
            name = layer.name
            self.last_prediction, self.last_source, self._last_uid = pred, name, layer.unique_id
            self._show(model, pred, name, where, geometry, then=lambda: self._finish_run(True), layers=prepared)
            msg = (f"{name}: {label}, {pred.params.get('tiles', '?')} tiles on {pred.device} ({pred.precision}) in "
                   f"{pred.timings['total_s']:.1f} s")
            if turned := pred.params.get("reoriented"):  # stored in another orientation than the model's (as the CLI says)
                msg += f" (turned {turned} for the model)"
            if pred.params.get("mode") == "slices":  # a z-stack, a time-lapse (t, y, x) or a few planes
                # a turned volume ran on the model's slices (a sagittal-stored CT: its 30 axial ones, not 512)
                n, turned_note = (pred.params.get("model_shape") or np.shape(pred.labels))[0], " in the model's orientation"
                unit = ("frame" if is_time_axis(layer) else "slice") + ("s" if n != 1 else "")  # (a (1, y, x) stack)
                msg += f"; its {n} {unit}{turned_note if turned else ''} one by one"
            if layer.multiscale:
                msg += "; at the pyramid's full resolution"
            used, est = pred.params.get("diameter_used"), pred.params.get("diameter_measured")
            if used is not None:  # "auto" stays in the field: the next image is estimated again
                size = f"estimated {est:.1f} px" if est is not None else f"{used:.1f} px"
                msg += f"; objects {size} wide, rescaled x{pred.params.get('scale', 1):.2f}"
            msg += _size_note(pred, model)
            self.status.value = msg
            for w in pred.warnings:
                notify_warning(f"{name}: {w}")

        def on_error(exc, named: bool = False):
            if is_deleted(self):  # the viewer closed while this ran
                return
            if isinstance(exc, Cancelled):
                self.status.value = "Cancelled; the layers were left as they were."
                notify_info("Segmentation cancelled.")
                return
            if isinstance(exc, AttnSegError):
                notify_error(str(exc) if named else f"{name}: {exc}")
            else:
                notify_error(f"{name}: unexpected error ({error_message(exc)}).")
            self.status.value = f"Failed: {error_message(exc)}"

        worker.yielded.connect(on_progress)
        worker.returned.connect(on_done)
        worker.errored.connect(on_error)
        worker.finished.connect(finish)
        self.run_button.enabled = self.estimate_button.enabled = False
        self.cancel_button.enabled = True
        self.progress_bar.max, self.progress_bar.value = 1, 0  # (not the last run's, until this one's first tiles)
        self.status.value = f"Running {label} on {name}..."
        self.worker = worker
        start_long(worker)
        return worker

    def estimate_and_run(self):
        """Estimate the objects' size from a first pass and segment at the scale the model learnt."""
        self.diameter_edit.value = "auto"
        return self.run()

    def _finish_run(self, ok: bool) -> None:
        self.run_button.enabled = self.estimate_button.enabled = True
        self.progress_bar.value = self.progress_bar.max if ok else self.progress_bar.value
        self.run_done.emit(ok)

    def cancel(self) -> None:
        if self._token is not None:
            if not is_deleted(self) and self.running() and self.cancel_button.enabled and not self._token.cancelled:
                # (Run stays greyed until the worker has stopped: say why, instead of "Running ..." meanwhile)
                self.status.value = "Cancelling: the run stops at its next step; Run is available again then."
                self.cancel_button.enabled = False
            self._token.cancel()

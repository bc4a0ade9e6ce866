"""normalise -> tile -> run -> blend -> Prediction, streamed slab by slab along the first axis.

Outputs are finalised as soon as no remaining tile can touch them, so besides the outputs
themselves only a slab one tile deep is held in float32; with ``out=`` the outputs are memory-mapped
files, which makes volumes larger than memory possible.

The pieces live beside this module: ``checks`` (the image, the options, tile and batch sizes),
``slabs`` (the image on the model's device a row of tiles at a time, normalised there, tiles cut
there), ``forward`` (a batch through the network, flip averaging), ``blend`` (tiles into the slab and
the outputs) and ``outputs`` (in memory or memory-mapped).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from ..devices import resolve_device
from ..errors import Cancelled, InputError
from ..models.base import SegmentationModel
from ..options import MODES
from . import orient
from .blend import FINALIZE_VOXELS, SlabBlender
from .checks import (
    CT_UNLIKE,
    DEFAULT_TILE,
    FOREGROUND_WARNING,
    check_input,
    check_overlap,
    check_probability_dtype,
    domain_warning,
    foreground_warning,
    model_warnings,
    prepare,
    scan_warning,
    smaller_tile,
)
from .checks import batch_size as _batch_size
from .checks import count_nonfinite as _count_nonfinite
from .checks import model_tile as _model_tile
from .forward import ForwardTimer, map_centre
from .forward import run_batch as _run_batch  # looked up here at each batch: tests replace it
from .normalize import compute_stats
from .object_size import object_size_check
from .outputs import Outputs
from .outputs import Outputs as _Outputs  # noqa: F401 - the name before the split
from .precision import choose_precision, compiled_twin, inference_copy
from .prediction import CancelToken, Prediction
from .resample import needs_resampling, zoom_back_into, zoom_image
from .slabs import SlabSource
from .tiling import TileGrid

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_TILE", "FINALIZE_VOXELS", "MODES", "check_input", "iter_predict", "predict"]

_BLEND_ON_DEVICE: bool | None = None  # None: on the device unless it is the CPU (tests force the torch path)


def iter_predict(
    model: SegmentationModel,
    image: npt.ArrayLike,
    *,
    mode: str | None = None,
    tile: int | Sequence[int] | None = None,
    overlap: float | None = None,
    attention: bool = False,
    device: str | torch.device = "auto",
    precision: str = "auto",
    progress: Callable[[int, int], Any] | None = None,
    cancel: CancelToken | None = None,
    tta: bool = False,
    spacing: Sequence[float] | None = None,
    out: str | os.PathLike | None = None,
    batch_size: int | None = None,
    return_probabilities: bool = True,
    probability_dtype: str = "float16",
    normalization: dict[str, Any] | None = None,
    diameter: float | str | None = None,
    brain_extraction: bool | None = None,
    orientation: Sequence[str] | None = None,
) -> Generator[tuple[int, int], None, Prediction]:
    """Like :func:`predict` (same parameters), as a generator that yields ``(done, total)`` tiles and
    returns the :class:`Prediction` (``StopIteration.value``, or the value of ``yield from``).

    A CUDA out-of-memory error restarts the prediction with half the tiles per batch, then with
    smaller tiles, and says so in ``Prediction.warnings`` instead of failing.
    """
    options = {k: v for k, v in locals().items() if k not in ("model", "image")}
    return _pipeline(model, image, options)


def _pipeline(model, image, options: dict[str, Any]) -> Generator[tuple[int, int], None, Prediction]:
    """The steps around the sliding window: rescaling to the card's object size (``diameter``), brain
    extraction when the card asks for skull-stripped input, then the engine (retried on GPU OOM)."""
    model, image = prepare(model, image, options)  # a name is loaded, a list becomes an array, options checked
    turn = orient.needed(model, image, options)
    scan = scan_warning(getattr(model, "card", None), options.pop("orientation"), image)
    if turn is not None:
        pred = yield from orient.with_orientation(_pipeline_turned, model, image, options, turn)
    else:
        pred = yield from _pipeline_turned(model, image, options)
    unlike = foreground_warning(pred.labels, getattr(model, "card", None))
    if unlike:  # said once, of the final labels (the passes of a diameter run go through here too)
        pred.warnings = [w for w in pred.warnings if FOREGROUND_WARNING not in w] + [unlike]
    if scan:  # a microscopy model on a scan placed in the body
        pred.warnings.insert(0, scan)
    # objects of another size; not said when another warning says the image is unlike the training data (nuclei-2d
    # on a CT in HU: "the 9 objects found are 362 px wide ... --diameter auto" would shrink the body 14 times)
    ct = any(CT_UNLIKE in w for w in pred.warnings)
    object_size_check(pred, getattr(model, "card", None), skip=bool(scan or unlike or ct))
    return pred


def _pipeline_turned(model, image, options: dict[str, Any]) -> Generator[tuple[int, int], None, Prediction]:
    diameter = options.pop("diameter")
    if diameter is not None:
        from .diameter import iter_predict_diameter

        return (yield from iter_predict_diameter(iter_predict, model, image, diameter=diameter, **options))
    brain = options.pop("brain_extraction")
    skipped = None
    if brain is None:
        brain = getattr(getattr(model, "card", None), "brain_extraction", None) == "auto"
        if brain and np.ndim(image) == 3:
            from ..display import is_hounsfield

            if is_hounsfield(image):  # a CT is not an MRI head with a scalp to strip (auto only; on forces it)
                brain, skipped = False, ("Brain extraction was skipped: the image is a CT in Hounsfield units, not an "
                                         "MRI head (attnseg predict --brain-extraction on, or Brain extraction: on in the panel, forces it).")
    if not brain or model.spatial_dims != 3 or model.in_channels != 1 or np.ndim(image) != 3:
        pred = yield from _retrying(model, image, options)
        if skipped:
            pred.warnings.append(skipped)
        return pred
    from .brain import with_brain_extraction

    return (yield from with_brain_extraction(_retrying, model, image, options))


def _retrying(model, image, options: dict[str, Any]) -> Generator[tuple[int, int], None, Prediction]:
    notes: list[str] = []
    while True:
        try:
            pred = yield from _iter_predict(model, image, **options)
            pred.warnings[:0] = notes
            return pred
        except torch.cuda.OutOfMemoryError:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            batch = options["batch_size"] or 0
            if batch != 1:
                options["batch_size"] = max(1, batch // 2) if batch else 4
                notes.append(f"Out of GPU memory: retried with {options['batch_size']} tiles per batch.")
            else:
                smaller = smaller_tile(model, options["tile"])
                if smaller is None:
                    raise InputError("Out of GPU memory even with the smallest tiles; use device 'cpu'.") from None
                options["tile"] = smaller
                notes.append(f"Out of GPU memory: retried with tiles of {smaller}.")
            log.warning(notes[-1])


def predict(
    model: SegmentationModel,
    image: npt.ArrayLike,
    *,
    mode: str | None = None,
    tile: int | Sequence[int] | None = None,
    overlap: float | None = None,
    attention: bool = False,
    device: str | torch.device = "auto",
    precision: str = "auto",
    progress: Callable[[int, int], Any] | None = None,
    cancel: CancelToken | None = None,
    tta: bool = False,
    spacing: Sequence[float] | None = None,
    out: str | os.PathLike | None = None,
    batch_size: int | None = None,
    return_probabilities: bool = True,
    probability_dtype: str = "float16",
    normalization: dict[str, Any] | None = None,
    diameter: float | str | None = None,
    brain_extraction: bool | None = None,
    orientation: Sequence[str] | None = None,
) -> Prediction:
    """Segment ``image`` with ``model``.

    Args:
        model: a model from :func:`napari_attnseg.load_model` (or ``create_model``), or a bundled model
            name or ``.safetensors`` path, loaded on ``device``.
        image: numpy, dask or zarr array: (y, x), (z, y, x), or channels first when the model has
            several input channels.
        mode: one of ``napari_attnseg.options.MODES``: ``2d``, ``3d`` or ``slices`` (a 2D model over
            the first axis of a volume); None: from the model and the image.
        tile: tile size, one number or one per model axis; None: the model card's (else 256 in 2D,
            96 in 3D), rounded to what the network divides.
        overlap: fraction of a tile shared with its neighbour, in [0, 1); None: the card's, else 0.25.
        attention: also return the attention maps of every level.
        device: one of ``napari_attnseg.options.DEVICES``: ``auto`` (CUDA, then MPS, then CPU),
            ``cpu``, ``cuda`` (or ``cuda:1``), ``mps``.
        precision: one of ``napari_attnseg.options.PRECISIONS``: ``auto``, ``fp32``, ``bf16``, ``fp16``.
        progress: called with ``(done, total)`` tiles.
        cancel: a :class:`CancelToken`; cancelling raises :class:`~napari_attnseg.errors.Cancelled`.
        tta: average over flips (2 per axis: 4 passes in 2D, 8 in 3D).
        spacing: the image's voxel spacing (array axis order), for models trained at another spacing.
        out: a new folder where ``labels.npy`` and ``probabilities.npy`` are memory-mapped (big volumes).
        batch_size: tiles per forward pass; None: chosen for the device.
        return_probabilities: keep the per-class probabilities (``False`` saves memory).
        probability_dtype: ``float16`` (half the memory) or ``float32``.
        normalization: overrides the card's intensity normalisation (e.g. ``{"scheme": "none"}``).
        diameter: the typical object diameter in pixels of this image, or ``"auto"`` to estimate it
            from a first pass; the image is rescaled to the card's ``object_diameter`` and back.
        brain_extraction: strip skull and scalp first (3D brain models); None: when the card says
            ``"brain_extraction": "auto"``, which leaves an input that is already stripped as it is.
        orientation: which way the volume's array axes run, as orientation letters (``("S", "A", "R")``;
            ``napari_attnseg.data.orientation.volume_codes(volume)`` for a file read with ``read_image``).
            When the model's card names the orientation it was trained in and this one differs, the
            volume is permuted/flipped to it (no resampling) and the results back; None: as stored.

    Raises:
        InputError: the image does not fit the model, or an option is out of range.
        Cancelled: ``cancel`` was cancelled; nothing was written.
    """
    options = {k: v for k, v in locals().items() if k not in ("model", "image")}
    gen = _pipeline(model, image, options)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def _iter_predict(model, image, *, mode, tile, overlap, attention, device, precision, progress, cancel, tta,
                  spacing, out, batch_size, return_probabilities, probability_dtype,
                  normalization) -> Generator[tuple[int, int], None, Prediction]:
    t_start = time.perf_counter()
    mode, has_channels = check_input(model, image, mode)
    prob_dtype = check_probability_dtype(probability_dtype)
    card = getattr(model, "card", None)
    warnings: list[str] = model_warnings(model)
    dev = resolve_device(device)
    prec = choose_precision(dev, precision)
    overlap = check_overlap(overlap, card)

    spatial = tuple(image.shape[1:] if has_channels else image.shape)
    stats = compute_stats(image, normalization or getattr(card, "normalization", None), has_channels)
    if stats["constant"]:
        warnings.append("The image is constant: the model has nothing to segment; check the layer or the file.")
    domain = domain_warning(card, image, has_channels, normalization)
    if domain:
        warnings.append(domain)
    n_bad = _count_nonfinite(image)
    if n_bad:
        warnings.append(f"The image has {n_bad} NaN or infinite values; they were treated as the image minimum.")
    if stats.get("saturated"):
        warnings.append(f"{stats['saturated']:.1%} of the image is at its brightest value (saturated, or a filled "
                        "stripe or tile), far above the rest: those pixels were left out of the intensity scaling "
                        "and taken as very bright. Check the result there.")

    # spacing: resample to the model's training spacing when the card has one and the image differs
    factors = None
    model_spacing = getattr(card, "spacing", None)
    work = image
    if spacing is not None and model_spacing is not None:
        factors = needs_resampling(spacing, model_spacing, mode)
        if factors is not None:
            work = zoom_image(image, stats, factors, has_channels)
            stats = None  # already normalised
    work_spatial = tuple(work.shape[1:] if (has_channels or factors is not None) else work.shape)
    chan_axis = has_channels or factors is not None

    tile_shape = _model_tile(model, mode, work_spatial, tile, card)
    strides = {name: (1,) * (len(work_spatial) - model.spatial_dims) + tuple(s) for name, s in model.attention_strides.items()}
    centres = {name: (0.0,) * (len(work_spatial) - model.spatial_dims) + map_centre(model, name) for name in strides}
    align = [max([1] + [s[a] for s in strides.values()]) if tile_shape[a] > 1 else 1 for a in range(len(work_spatial))]
    ov = [0.0 if t == 1 else overlap for t in tile_shape]
    grid = TileGrid(work_spatial, tile_shape, ov, align)
    copies = contextlib.ExitStack()
    net = compiled_twin(copies.enter_context(inference_copy(model, dev, cancel)), dev)  # CUDA, opt-in
    bs = _batch_size(tile_shape, dev, batch_size)
    n_classes = model.out_channels
    k_out = max(n_classes, 2)

    store = Outputs(out)
    try:
        label_dtype = np.uint8 if k_out <= 255 else np.uint16
        labels = store.array("labels", work_spatial, label_dtype) if factors is None else None
        probs = None
        if return_probabilities and factors is None:
            probs = store.array("probabilities", (k_out, *work_spatial), prob_dtype)
        keep_full_probs = factors is not None  # resampled: keep float32 on the model grid, zoom back at the end
        full_probs = np.zeros((k_out, *work_spatial), np.float32) if keep_full_probs else None

        # On a GPU the blending happens there too (see blend.py); on the CPU it is NumPy.
        on_dev = dev.type != "cpu" if _BLEND_ON_DEVICE is None else _BLEND_ON_DEVICE
        starts = grid.starts()
        blender = SlabBlender(grid, starts, tile_shape, work_spatial, k_out, bs, dev, on_dev, strides, attention,
                              labels, probs, full_probs, label_dtype, prob_dtype, centres)
        # the image goes to the device a slab (a row of tiles) at a time; tiles are cut there
        source = copies.enter_context(contextlib.closing(SlabSource(work, stats, chan_axis, tile_shape,
                                                                    grid.extent, dev)))
        timer = ForwardTimer(dev)
        total = len(starts) * (2 ** model.spatial_dims if tta else 1)
        done = 0
        yield 0, total

        for b0 in range(0, len(starts), bs):
            if cancel is not None and cancel.cancelled:
                raise Cancelled("Prediction cancelled; no output was written.")
            batch_starts = starts[b0 : b0 + bs]
            x = source.tiles(batch_starts)
            with timer:
                p_batch, m_batch = _run_batch(net, x, mode, dev, prec, attention, tta, n_classes, cancel,
                                              to_numpy=not on_dev)
            source.prefetch(starts[b0 + bs : b0 + 2 * bs])  # CUDA: uploads while this batch runs
            blender.add(batch_starts, p_batch, m_batch)
            done += len(batch_starts) * (2 ** model.spatial_dims if tta else 1)
            nxt = starts[b0 + bs][0] if b0 + bs < len(starts) else grid.extent[0]
            blender.finalize(nxt)
            if progress is not None:
                progress(done, total)
            yield done, total
        blender.finish()
        # the ratio the resampling applied (n / round(n / f)), not the nominal one: maps then end where the image does
        attention_maps = blender.attention_maps(
            None if factors is None else tuple(n / m for n, m in zip(spatial, work_spatial)))
        t_model = timer.total()

        if factors is not None:
            labels = store.array("labels", spatial, label_dtype)
            probs = store.array("probabilities", (k_out, *spatial), prob_dtype) if return_probabilities else None
            zoom_back_into(full_probs, spatial, labels, probs)  # a few rows at a time (no whole float32 copy)
        store.commit()
    except BaseException:
        store.discard()
        raise
    finally:
        copies.close()

    if store.final is not None:  # reopen from the final place
        labels, probs = store.reopen(return_probabilities)
    classes = list(getattr(card, "classes", None) or (["background"] + [f"class {i}" for i in range(1, k_out)]))
    for w in warnings:
        log.warning(w)
    return Prediction(
        labels=labels,
        probabilities=probs,
        attention=attention_maps,
        classes=classes,
        device=str(dev),
        precision=prec,
        timings={"total_s": time.perf_counter() - t_start, "model_s": t_model, "read_s": source.read_s},
        params={"mode": mode, "tile": list(tile_shape), "overlap": overlap, "tta": tta, "batch_size": bs,
                "tiles": len(starts), "resampled": factors is not None, "spacing": list(spacing) if spacing else None},
        warnings=warnings,
    )

"""What ``predict`` checks before it runs: the image against the model, the mode, the options, and
the tile and batch sizes it derives from them."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..options import MODES, PROBABILITY_DTYPES
from .fit_checks import (  # noqa: F401 (their home; imported from here too)
    CT_UNLIKE,
    _background_warning,
    domain_warning,
    fine_tuning_advice,
    median_position,
)
from .tiling import round_up

DEFAULT_TILE = {2: 256, 3: 96}


def _describe(image) -> str:
    return f"array of shape {tuple(image.shape)} and dtype {image.dtype}"


def check_input(model, image, mode: str | None) -> tuple[str, bool]:
    """Validate the image for the model; return the mode and whether it has a channel axis."""
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        image = np.asarray(image)
    dtype = np.dtype(image.dtype)
    if not (np.issubdtype(dtype, np.number) or dtype == np.bool_) or np.issubdtype(dtype, np.complexfloating):
        raise InputError(f"The image must be numeric; got an {_describe(image)}. Convert it to a numeric type.")
    if image.size == 0 or 0 in image.shape:
        raise InputError(f"The image is empty ({_describe(image)}).")
    dims = model.spatial_dims
    cin = model.in_channels
    has_channels = cin > 1
    spatial_ndim = image.ndim - (1 if has_channels else 0)
    if has_channels and image.shape[0] != cin:
        name = getattr(getattr(model, "card", None), "name", "")
        who = f"Model {name!r}" if name else "The model"
        raise InputError(
            f"{who} takes {cin} channels, stacked as the first axis; got an {_describe(image)}. "
            + (_colour_hint(image, cin) or "Give it an image with those channels first, e.g. (C, y, x) or (C, z, y, x) "
               "(in napari: one layer holding them), or choose a model that takes one channel.")
        )
    if spatial_ndim not in (2, 3):
        hint = (" Is it an RGB or multi-channel image? Segment one channel (attnseg predict --channel K; in Python "
                "index that axis)." if image.ndim and min(image.shape) in (2, 3, 4) else "")
        if spatial_ndim == 4 and image.shape[-1] in (3, 4):  # (z, y, x, RGB): colours last, as pictures are stored
            hint = (" Is it an RGB volume (colours on the last axis)? Segment one colour (attnseg predict --channel K; in "
                    "Python index that axis), or a time-lapse of volumes: one time point at a time.")
        elif spatial_ndim == 4:  # (t, z, y, x) reads the same: a time-lapse of volumes, a channel already picked
            hint = (" Is it a time-lapse of volumes (t, z, y, x), or an image with several channels? Segment one "
                    "time point at a time (split the time points into files of their own), or one channel "
                    "(--channel K); in Python index that axis.")
        raise InputError(
            f"The model expects a 2D image or a 3D volume{' with a channel axis first' if has_channels else ''}; "
            f"got an {_describe(image)}.{hint}"
        )
    if dims == 3 and spatial_ndim == 2:
        raise InputError(
            f"This is a 3D model: it needs a volume (z, y, x); got a 2D image ({_describe(image)}). "
            "Choose a 2D model for 2D images."
        )
    if mode is None and dims == 2 and spatial_ndim == 3 and not has_channels and _channel_last(image.shape):
        raise InputError(
            f"The image ({_describe(image)}) looks like a channel-last image (y, x, {image.shape[-1]}), not a volume: "
            "a 2D model would run over each of its rows as a slice. Segment one channel: --channel K (K from 0 to "
            f"{image.shape[-1] - 1}; in Python img[..., K]); if it really is a volume of {image.shape[-1]} slices, run "
            "attnseg predict --mode slices (Python: mode='slices')."
        )
    if mode is not None and not isinstance(mode, str):
        raise InputError(f"mode must be one of {', '.join(MODES)} or None; got {mode!r}.")
    if mode is None:
        mode = "3d" if (dims == 3 and spatial_ndim == 3) else ("slices" if spatial_ndim == 3 else "2d")
    mode = mode.lower()
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}; got {mode!r}.")
    if mode == "3d" and (dims != 3 or spatial_ndim != 3):
        raise InputError(f"mode '3d' needs a 3D model and a volume; the model is {dims}D and the image has {spatial_ndim} spatial axes.")
    if mode == "3d":
        _check_thickness(tuple(image.shape[-3:]), "")
    if mode == "2d" and (dims != 2 or spatial_ndim != 2):
        raise InputError(
            f"mode '2d' needs a 2D model and a 2D image; the model is {dims}D and the image has {spatial_ndim} spatial axes"
            + (" (use mode 'slices' to run a 2D model slice by slice)." if spatial_ndim == 3 and dims == 2 else ".")
        )
    if mode == "slices" and (dims != 2 or spatial_ndim != 3):
        raise InputError(f"mode 'slices' runs a 2D model over a volume; the model is {dims}D and the image has {spatial_ndim} spatial axes.")
    return mode, has_channels


def _colour_hint(image, cin: int) -> str | None:
    """What to do with a picture's array given to a model of ``cin`` colours: colours last (y, x, 3) as pictures are
    stored, or an RGBA picture (4 samples: its alpha) for a model reading RGB; None for another array."""
    shape = tuple(image.shape)
    if image.ndim != 3 or cin not in (3, 4) or not ({shape[0], shape[-1]} & {3, 4}):
        return None
    last = shape[-1] in (3, 4) and shape[0] not in (3, 4)
    if cin == 3 and (shape[-1] if last else shape[0]) == 4:  # RGBA for a model reading RGB
        from ..data.alpha import flat_alpha, transparency_message

        rgba = np.asarray(image) if last else np.moveaxis(np.asarray(image), 0, -1)
        index = "image[..., :3]" if last else "image[:3]"
        move = ", then move the colours first: np.moveaxis(image[..., :3], -1, 0)" if last else ""
        if flat_alpha(rgba):
            return (f"It looks like an RGBA picture whose alpha is one value throughout (opaque): pass its colours "
                    f"without the alpha, {index}{move}.")
        return transparency_message("The image", rgba)
    if last and shape[-1] == cin:
        return "Its colours are on the last axis, as pictures are stored: pass np.moveaxis(image, -1, 0)."
    return None


def check_time_axis(axes: str, shape: tuple[int, ...], src, has_channels: bool = False,
                    dims: int | None = None) -> str | None:
    """An input whose axes (tifffile's: an ImageJ TZCYX hyperstack, its channel picked) hold time points of
    volumes: an :class:`InputError` that says so, and what to do, before the model's "2D image or 3D volume" check
    asks whether it is multi-channel (after ``--channel K`` was given). A time-lapse of 2D images (TYX) for a 3D
    model (``dims``): the warning to give with its result (it runs over the frames as the slices of one volume, as
    the napari Segment tab warns); a 2D model segments it frame by frame. None otherwise."""
    spatial = len(shape) - (1 if has_channels else 0)
    if len(axes) != len(shape) or "T" not in axes or spatial < 3:
        return None
    volume = " x ".join(str(n) for a, n in zip(axes, shape) if a in "ZYX")
    t = shape[axes.index("T")]
    if spatial == 3:
        return (f"{src} is a time-lapse (axes {axes}: {t} time points of {volume}): the 3D model took its frames as "
                "the slices of one volume; a 2D model segments each frame on its own (if they are z-slices, "
                "make them slices, not frames: Fiji's Image > Properties)") if dims == 3 and "Z" not in axes else None
    raise InputError(f"{src} is a time-lapse of volumes (axes {axes}: {t} time points of {volume}); a model segments "
                     "one 2D image or volume at a time. Split the time points into files of their own (in Fiji: "
                     "Image > Duplicate... with one frame; in Python: tifffile.imread(path)[t] for each t) and "
                     "segment each.")


def _channel_last(shape: tuple[int, ...]) -> bool:
    """A last axis of at most 4 that is much smaller than the other two: (y, x, C), not (z, y, x)."""
    return shape[-1] <= 4 and shape[-1] * 4 <= min(shape[:-1])


def prepare(model, image, options: dict):
    """The model and the image ``predict`` works on, with its options checked (and normalised in place)
    before anything runs: a bundled name or a path is loaded, an array-like becomes an array once."""
    if isinstance(model, (str, os.PathLike)):
        from ..checkpoint import load_model

        model = load_model(model, device=options.get("device") or "auto")
    if not all(hasattr(model, a) for a in ("spatial_dims", "in_channels", "out_channels", "attention_strides")):
        raise InputError(f"model must be a napari-attnseg model (napari_attnseg.load_model('nuclei-2d')) or a bundled "
                         f"model name or .safetensors path; got {type(model).__name__}.")
    if not hasattr(image, "shape") or not hasattr(image, "dtype"):
        try:
            image = np.asarray(image)
        except (ValueError, TypeError) as exc:
            raise InputError(f"The image cannot be read as an array ({exc}); pass a numpy array (y, x) or "
                             "(z, y, x).") from None
    if np.ndim(image) == 0:
        raise InputError(f"The image is a single number ({image!r}); pass an array (y, x) or (z, y, x).")
    mode, has_channels = check_input(model, image, options.get("mode"))
    spatial = image.ndim - (1 if has_channels else 0)
    if options.get("spacing") is not None:
        options["spacing"] = check_spacing(options["spacing"], spatial, image.ndim)
    options["normalization"] = check_normalization(options.get("normalization"))
    check_run_options(options)
    out = options.get("out")
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise InputError(f"out={str(out)!r} is an existing file; out is a new (or empty) folder for the outputs.")
    return model, image


def check_run_options(options: dict) -> None:
    """``batch_size``, ``cancel`` and ``progress`` checked before anything runs (API audit: ``batch_size=-1`` failed
    with "max() arg is an empty sequence", ``cancel=True`` and ``progress=5`` failed only after the first tiles)."""
    bs = options.get("batch_size")
    if bs is not None and (isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1):
        raise InputError(f"batch_size is a whole number of tiles per forward pass >= 1, or None (chosen for the device); "
                         f"got {bs!r}.")
    if options.get("cancel") is not None and not hasattr(options["cancel"], "cancelled"):
        raise InputError(f"cancel is a napari_attnseg.CancelToken() (call its .cancel() from another thread); got "
                         f"{options['cancel']!r}.")
    if options.get("progress") is not None and not callable(options["progress"]):
        raise InputError(f"progress is a function called with (done, total) tiles; got {options['progress']!r}.")


def check_spacing(spacing, ndim: int, array_ndim: int | None = None) -> list[float]:
    """One positive, finite spacing per spatial axis (array axis order); with ``array_ndim`` (channels
    first), one per array axis also does and the channel axis's is dropped."""
    try:
        values = [float(s) for s in (spacing if not np.isscalar(spacing) else [spacing])]
    except (TypeError, ValueError):
        values = None
    if values is not None and array_ndim is not None and len(values) == array_ndim != ndim:
        values = values[array_ndim - ndim:]
    if values is None or len(values) != ndim:
        raise InputError(f"spacing must be {ndim} numbers, one per spatial axis of the image (array axis order); "
                         f"got {spacing!r}.")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(f"spacing values must be positive and finite (e.g. {[1.0] * ndim}); got {spacing!r}.")
    return values


def check_normalization(normalization):
    """None, a spec dict, or a scheme name ("zscore") for ``{"scheme": name}``."""
    from .normalize import SCHEMES

    if normalization is None:
        return None
    if isinstance(normalization, str):
        normalization = {"scheme": normalization.strip().lower()}
    if not isinstance(normalization, dict):
        raise InputError(f"normalization must be a scheme name ({', '.join(SCHEMES)}) or a dict such as "
                         f"{{'scheme': 'zscore'}}; got {normalization!r}.")
    if normalization.get("scheme", "percentile") not in SCHEMES:
        raise InputError(f"normalization scheme must be one of {', '.join(SCHEMES)}; got {normalization.get('scheme')!r}.")
    return normalization


def model_warnings(model) -> list[str]:
    """A click model run without clicks segments nothing meaningful."""
    from ..prompts import is_promptable

    if not is_promptable(model):
        return []
    name = getattr(getattr(model, "card", None), "name", "") or "This model"
    return [f"{name} is a click (promptable) model: it segments the object under clicks. Use it with "
            "segment_with_prompts or the Click to fix mode; its automatic output (without clicks) is not meaningful."]


def _check_thickness(spatial: tuple[int, ...], where: str) -> None:
    """A 3D model needs a volume at least 2 voxels thick along every axis (one slice is a 2D image)."""
    thin = min(spatial)
    if thin < 2:
        axis = spatial.index(thin)
        raise InputError(
            f"The volume is too thin for a 3D model's tile: {thin} slice{'' if thin == 1 else 's'} along axis {axis} "
            f"(shape {spatial}{where}). Use a 2D model, which runs slice by slice (mode 'slices')."
        )


def check_probability_dtype(probability_dtype) -> np.dtype:
    try:
        prob_dtype = np.dtype(probability_dtype)
    except TypeError:
        prob_dtype = None
    if prob_dtype not in (np.float16, np.float32):
        raise InputError(f"probability_dtype must be {' or '.join(PROBABILITY_DTYPES)}; got {probability_dtype!r}.")
    return prob_dtype


def check_overlap(overlap: float | None, card) -> float:
    try:
        overlap = float(getattr(card, "overlap", 0.25) if overlap is None else overlap)
    except (TypeError, ValueError):
        raise InputError(f"overlap (--overlap) is a fraction of a tile in [0, 1) (e.g. 0.25); got {overlap!r}.") from None
    if not 0.0 <= overlap < 1.0:
        raise InputError(f"overlap (--overlap) must be in [0, 1); got {overlap}.")
    return overlap


def count_nonfinite(image) -> int:
    """NaN and infinite values of a float image, read a few slices at a time."""
    if not np.issubdtype(np.dtype(image.dtype), np.floating):
        return 0
    total = 0
    first = image.shape[0]
    step = max(1, first // 64)
    for i in range(0, first, step):
        chunk = np.asarray(image[i : i + step])
        total += int(chunk.size - np.count_nonzero(np.isfinite(chunk)))
    return total


def model_tile(model, mode: str, spatial: tuple[int, ...], tile, card) -> tuple[int, ...]:
    """The tile in image axes: the requested (or the card's) size, no bigger than the image than it
    must be, rounded to what the network and its attention strides divide."""
    nd = len(spatial)
    model_nd = model.spatial_dims
    if mode == "3d":
        _check_thickness(tuple(spatial), " once resampled to the model's voxel spacing")
    if tile is None:
        tile = getattr(card, "tile", None) or [DEFAULT_TILE[model_nd]] * model_nd
    try:
        tile = [int(tile)] * model_nd if np.isscalar(tile) else [int(t) for t in tile]
    except (TypeError, ValueError):
        raise InputError(f"tile (--tile) must be a number or {model_nd} numbers (pixels per axis), e.g. 256; "
                         f"got {tile!r}.") from None
    if len(tile) != model_nd:
        raise InputError(f"tile (--tile) must have {model_nd} sizes for a {model_nd}D model; got {tile}.")
    if any(t < 1 for t in tile):
        raise InputError(f"tile sizes (--tile) must be positive; got {tile}.")
    div = max(model.size_divisor, max((max(s) for s in model.attention_strides.values()), default=1))
    plane = spatial[-model_nd:]
    tile = [round_up(min(t, s), div) if s < t else round_up(t, div) for t, s in zip(tile, plane)]
    return tuple([1] * (nd - model_nd) + tile)


def batch_size(tile: Sequence[int], device: torch.device, requested: int | None) -> int:
    """Tiles per forward pass: ``requested``, else a voxel budget for the device."""
    if requested:
        return int(requested)
    # voxels per forward pass. On CPUs small batches are faster and lighter: measured on 2 cores,
    # 1024x1024 with 256^2 tiles 0.54 s at 16 tiles per batch vs 0.38-0.40 s at 2; a 256x512x512 CT
    # peak RSS 795 MB at 8 tiles of 32x64x64, 716 MB at 2.
    budget = {"cuda": 2**23, "mps": 2**21}.get(device.type, 2**17)
    return max(1, min(32, budget // math.prod(tile)))


def smaller_tile(model, tile) -> list[int] | None:
    """Half the current tile (for an out-of-memory retry); None when it cannot shrink further."""
    current = tile if tile is not None else (getattr(getattr(model, "card", None), "tile", None)
                                              or [DEFAULT_TILE[model.spatial_dims]] * model.spatial_dims)
    current = [int(current)] * model.spatial_dims if np.isscalar(current) else list(current)
    smaller = [max(model.size_divisor, t // 2) for t in current]
    return None if smaller == current else smaller


def scan_warning(card, orientation, image) -> str | None:
    """A warning when a model trained on images without anatomy (microscopy: its card names neither a voxel
    spacing nor a body orientation) is given a scan placed in the body (a NIfTI or DICOM volume, whose axis
    codes ``orientation`` are known): nuclei-2d on a T1 brain MRI marks 84 % of the head. None for a CT in
    Hounsfield units (:func:`domain_warning` speaks for it) and when either side is unknown."""
    from ..display import is_hounsfield
    from ..models.registry import bundled_models

    if card is None or orientation is None or getattr(card, "spacing", None) or getattr(card, "orientation", None):
        return None
    if (getattr(card, "normalization", None) or {}).get("scheme") == "ct" or is_hounsfield(image):
        return None
    name = getattr(card, "name", "") or "the model"
    scans = [f"{n} ({c.get('description') or n})" for n, c in bundled_models().items() if c.get("orientation")]
    instead = f" (bundled: {', '.join(scans)})" if scans else ""
    return (f"{name} was trained on microscopy images (its card gives no voxel spacing or body orientation), but this "
            f"is a scan placed in the body ({''.join(reversed(tuple(orientation)))}): what it marks here means little. "
            f"Use a model trained on this kind of scan{instead}, or fine-tune {name} on a few corrected slices of it.")


def fit_warning(card, image, has_channels: bool, orientation=None, normalization: dict | None = None) -> str | None:
    """Before a run: the first reason the image does not look like the model's training data (what the run
    itself will warn about; the Segment tab's "Before you run")."""
    return domain_warning(card, image, has_channels, normalization) or (
        None if has_channels else scan_warning(card, orientation, image))


FOREGROUND_WARNING = " of the image foreground (its training images: "


def foreground_warning(labels: np.ndarray, card) -> str | None:
    """A warning when the model calls much more of the image foreground than in its training images (the
    card's ``metrics.foreground_share``): more than a quarter of it, and more than three times the training
    share (nuclei trained at 20 %: from 60 %; a tumour model trained at 1 %: from 25 %)."""
    trained = (getattr(card, "metrics", None) or {}).get("foreground_share")
    if trained is None or np.size(labels) == 0:
        return None
    share = float(np.count_nonzero(labels)) / float(np.size(labels))
    if share <= 0.25 or share <= 3 * float(trained):
        return None
    name = getattr(card, "name", "") or "the model"
    trained_pc = f"{float(trained):.0%}" if trained >= 0.01 else f"{100 * float(trained):.2g}%"  # (a tumour: 0.26 %, not 0 %)
    return (f"{name} called {share:.0%}{FOREGROUND_WARNING}{trained_pc}): the "
            "image looks unlike the training data (inverted contrast, an uneven background, another stain or "
            "modality?). Check the result closely; correct and fine-tune on a few such images, or even out the "
            "background first.")

"""Read back what ``attnseg predict`` wrote, as the same layers the segment widget makes.

``<stem>_predict.json`` (the run's record) names the input and every output file, and the place of
each attention map on the image grid (a TIFF keeps only its pixel size, not the half-pixel offset of
a coarser map). Pure numpy: the napari reader only hands these tuples to the viewer.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from .data import read_image
from .errors import InputError
from .inference.prediction import AttentionMap, Prediction
from .layers import Placement, prediction_layers

RECORD_SUFFIX = "_predict.json"


def is_record(path: str | Path) -> bool:
    return Path(path).name.endswith(RECORD_SUFFIX)


def read_record(path: str | Path) -> dict:
    p = Path(path)
    try:
        record = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(f"{p} does not exist.") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{p} is not a readable prediction record ({exc}).") from None
    if not isinstance(record, dict) or "mask" not in record or "input" not in record:
        raise InputError(f"{p} is not a record written by `attnseg predict` (no 'input'/'mask' entries).")
    return record


def _output(folder: Path, name: str, record_path: Path) -> np.ndarray:
    f = folder / name
    if not f.exists():
        raise InputError(f"{record_path} names {name}, which is not in {folder}; was it moved or deleted?")
    return np.asarray(read_image(f).data)


def record_layers(path: str | Path) -> list[tuple]:
    """Layer data tuples for a prediction record: the input image, the mask (labels), the probability
    (hidden) and one heatmap per attention level, placed exactly as the segment widget places them.

    A missing input image is a warning (the outputs still open, on the recorded pixel size); a missing
    output named by the record is an error that names it.
    """
    p = Path(path)
    record = read_record(p)
    folder = p.parent
    name = p.name[: -len(RECORD_SUFFIX)]
    spacing = tuple(float(s) for s in record.get("spacing") or ())

    layers: list[tuple] = []
    image = None
    for candidate in (Path(record["input"]), folder / str(record.get("input_reference") or "")):
        if candidate != folder and candidate.exists():
            image = read_image(candidate)
            break
    if image is not None:
        spacing = tuple(float(s) for s in image.spacing)
        meta = {"source_path": str(image.meta.get("source_path", record["input"])), "spacing": list(spacing),
                "format": image.meta.get("format")}
        if image.affine is not None:
            meta["affine"] = np.asarray(image.affine).tolist()
        layers.append((image.data, {"name": name, "scale": spacing, "metadata": meta}, "image"))
    else:
        warnings.warn(f"{p}: the input {record['input']} is gone; showing the outputs only.", stacklevel=2)

    labels = _output(folder, record["mask"], p)
    if image is not None and tuple(image.data.shape[-labels.ndim:]) != labels.shape:
        raise InputError(f"{p}: the mask {record['mask']} has shape {labels.shape} but the input "
                         f"{record['input']} has {image.data.shape}; the input was replaced since the prediction.")
    if len(spacing) != labels.ndim:
        spacing = (1.0,) * labels.ndim
    probabilities = None
    if record.get("probability"):
        fg = _output(folder, record["probability"], p).astype(np.float32)
        fg = fg[None] if fg.ndim == labels.ndim else fg
        probabilities = np.concatenate([np.clip(1.0 - fg.sum(0, keepdims=True), 0, 1), fg])
    maps = [AttentionMap(m["name"], int(m["level"]), _output(folder, m["file"], p).astype(np.float32),
                         tuple(m["scale"]), tuple(m["translate"])) for m in record.get("attention", [])]
    pred = Prediction(labels=labels, probabilities=probabilities, attention=maps,
                      classes=list(record.get("classes") or []), device=record.get("device", ""),
                      precision=record.get("precision", ""), timings=dict(record.get("timings_s") or {}),
                      params=dict(record.get("params") or {}), warnings=list(record.get("warnings") or []))
    meta = {"source_layer": name, "model": record.get("model"), "checkpoint": record.get("model_path"),
            "checkpoint_sha256": record.get("model_weights_sha256"), "device": pred.device,
            "precision": pred.precision, "params": pred.params, "timings": pred.timings, "record": str(p)}
    layers += prediction_layers(None, pred, name, Placement(spacing, (0.0,) * labels.ndim), meta=meta)
    return layers

"""The objects' size for click to fix, when nobody gave one: the click model learnt objects of its card's
``object_diameter`` and, without a ``diameter``, fails on bigger ones (a 2x-magnified nucleus of 48 px:
IoU 0.04 from one click). Audit of 2026-12: the napari prompt mode used only a diameter the Segment run
was given, so on an image segmented without one, or not segmented at all, every click ran at the card's size.

:func:`typical_diameter` finds the size without running anything (a Segment run's diameter or the objects
it found, or the objects of the mask being corrected); :func:`automatic_diameter` runs the automatic model
the click model was fine-tuned from (its card's ``training.start_model``) once at the image's own scale
and measures what it finds (:func:`~napari_attnseg.inference.object_size.measure_diameter`, no second
pass). The napari prompt mode calls them once per image layer and keeps the answer.

Measured (one click at the centre of 12 held-out nuclei of the right half, mean IoU without -> with the
size of :func:`automatic_diameter`; nuclei-2d-prompt, 1 thread): nuclei image 2x (estimate 48.5 px, true
50.4) 0.238 -> 0.877; 4x (92.9 px) 0.012 -> 0.873; 0.5x (15.0 px) 0.686 -> 0.843; 1x (25.8 px: within
10 % of the card's 25.1, not rescaled) 0.910 both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..inference.object_size import FOUND_KEY, MIN_INTERIOR, measure_diameter

PROBE = 1024  # the automatic model runs on a central crop of at most this many pixels per axis
SMALL = 0.4  # a new object whose diameter is under this share of the typical one is reported (status)
# An estimate is used when it lies outside this share of the card's object_diameter. Measured (20 held-out
# nuclei, one click each, mean IoU without -> with the estimate; estimate / card): 0.75x image 0.81, 0.852 ->
# 0.844; 0.85x 0.90, 0.857 -> 0.856; 1x 1.03, 0.878 both; 1.15x 1.15, 0.815 -> 0.856; 1.25x 1.25, 0.788 ->
# 0.855; 1.5x 1.46, 0.589 -> 0.850. (A diameter the Segment run was given is always used.)
BAND = (0.75, 1.1)
GIVEN = "the Segment run's object diameter"


def typical_diameter(params: dict | None, labels: np.ndarray | None) -> tuple[float | None, str]:
    """The objects' diameter in pixels from what is already there, and where it came from: the diameter a
    Segment run used (``params``: the mask layer's ``attnseg.params``), the median of the objects its run
    found (``params[FOUND_KEY]``), or the objects of ``labels`` (the mask being corrected, one plane)
    when it holds at least ``MIN_INTERIOR`` whole ones. ``(None, "")`` when none of these says."""
    params = params or {}
    if params.get("diameter_used"):
        return float(params["diameter_used"]), GIVEN
    if params.get(FOUND_KEY):
        return float(params[FOUND_KEY]), "the objects the Segment run found"
    if labels is not None and np.any(labels):
        found, _, whole = measure_diameter(np.asarray(labels), whole=True)
        if found is not None and whole >= MIN_INTERIOR:
            return float(found), f"the {whole} objects of the mask"
    return None, ""


def automatic_model(card, depth: int = 3):
    """The automatic (not promptable) model the click model's card says it was fine-tuned from, loaded on the
    CPU, or None: a bundled name or an existing checkpoint, followed back through promptable ones."""
    from ..checkpoint import load_model
    from ..models.registry import bundled_models
    from .convert import is_promptable

    for _ in range(depth):
        training = getattr(card, "training", None) or {}
        start = training.get("start_model") or (training.get("config") or {}).get("start_model")
        if not start or not (str(start) in bundled_models() or Path(str(start)).is_file()):
            return None
        try:
            model = load_model(str(start), device="cpu")
        except Exception:  # an unreadable start checkpoint: no estimate, the clicks run as before
            return None
        if not is_promptable(model):
            return model if getattr(model.card, "object_diameter", None) else None
        card = model.card
    return None


def automatic_diameter(card, plane: np.ndarray) -> tuple[float | None, str]:
    """Run the click model's automatic start model (:func:`automatic_model`) on ``plane`` (a central crop of
    at most ``PROBE`` pixels per axis) at its own scale and measure the objects it finds."""
    model = automatic_model(card)
    if model is None:
        return None, ""
    from ..inference.engine import predict

    plane = np.asarray(plane)
    box = tuple(slice(max(0, (n - PROBE) // 2), max(0, (n - PROBE) // 2) + PROBE) for n in plane.shape[-2:])
    pred = predict(model, plane[(..., *box)], device="cpu", return_probabilities=False)
    found, n = measure_diameter(pred.labels)
    if found is None or n < MIN_INTERIOR:
        return None, ""
    return float(found), f"the {n} objects {model.card.name or 'the automatic model'} finds"


def to_use(found: tuple[float | None, str], trained: float | None) -> float | None:
    """The diameter a click runs at from ``found`` (:func:`typical_diameter` / :func:`automatic_diameter`): a
    Segment run's given diameter always, an estimate only outside :data:`BAND` of the card's ``trained`` size."""
    d, source = found
    if d is None or not trained or source == GIVEN:
        return d
    return None if BAND[0] <= d / float(trained) <= BAND[1] else d


def object_note(result_mask: np.ndarray, typical: float | None, trained: float | None) -> str:
    """A status note when a new object came out far smaller (:data:`SMALL`) than the typical object here
    (``typical``; else the model's ``trained`` size): a click model run at the wrong size cuts objects short."""
    ref = typical or trained
    area = int(np.count_nonzero(result_mask))
    if not ref or not area:
        return ""
    d = float(np.sqrt(4.0 * area / np.pi)) if result_mask.ndim == 2 else float((6.0 * area / np.pi) ** (1 / 3))
    if d >= SMALL * float(ref):
        return ""
    where = "objects here" if typical else "the model's objects"
    return (f"; the object came out {d:.0f} px wide, far smaller than {where} ({float(ref):.0f} px): if it is cut "
            "short, give the objects' size (the Segment tab's Object diameter, or 'Estimate the size and run') and "
            "run Segment; the clicks then use it")


def write_report(result_mask: np.ndarray, initial: np.ndarray | None, box, added: int, removed: int,
                 first: bool) -> dict[str, Any]:
    """What a run did to the mask, for the status: voxels ``added`` / ``removed`` (written), and on an existing
    object's first run (``initial``: its mask before the click, the plane of a 2D run) how many of its voxels
    lie outside the model's object (``kept``: a first run never removes) and whether the model's object lies
    inside it (``inside``: nothing to add). ``big``: the object under the click is far bigger than the
    model's (more than 4 times its voxels), i.e. not a touching neighbour but a region of another kind."""
    out: dict[str, Any] = {"added": int(added), "removed": int(removed), "kept": 0, "inside": False, "big": False,
                           "initial": 0, "model": int(np.count_nonzero(result_mask)), "first": bool(first)}
    if initial is None or not first:
        return out
    initial = np.asarray(initial, bool)
    n_init = int(np.count_nonzero(initial))
    overlap = int(np.count_nonzero(initial[box] & np.asarray(result_mask)[box]))
    out.update(initial=n_init, kept=n_init - overlap, inside=overlap == out["model"],
               big=n_init > 4 * max(1, out["model"]))
    return out

"""What a run shorter than one epoch (the budget ended inside epoch 1) is told, the same words for ``attnseg
train/finetune`` and the napari Fine-tune tab: how far it got and what its model is worth (close to the start, or,
for the classes the run added with an untrained output row, close to noise)."""

from __future__ import annotations

from typing import Any


def new_classes(checkpoint: str | None) -> list[str]:
    """The classes a fine-tuned checkpoint predicts that its start model did not (their output rows were
    initialised anew: the card's ``training.head_reinitialised``), matched by name as the run matched them; []
    when none or when the card cannot be read."""
    from ..checkpoint import read_card
    from ..models.registry import card_of
    from .steps import kept_classes

    if not checkpoint:
        return []
    try:
        card = read_card(checkpoint)
    except Exception:  # no readable card: say nothing about its classes
        return []
    if not card.training.get("head_reinitialised"):
        return []
    start = str(card.training.get("start_model") or "")
    found = card_of(start) if start else None  # a bundled or user model by name, else a checkpoint path
    rows = kept_classes([str(c) for c in (found or {}).get("classes") or []], list(card.classes))
    return [n for j, n in enumerate(card.classes) if j not in rows]


def short_run_text(result: Any, last_step: dict | None, minutes: float | None, from_scratch: bool = False) -> str:
    """"Less than one epoch ran (4 of 25 steps; ...): ...; give a longer budget." when ``result`` (a
    :class:`~.config.TrainResult`) ran less than one whole epoch, else ''. ``last_step``: the last ``on_step``
    report of the run (epoch, step, steps); ``from_scratch``: a run without a start model (its start: random weights)."""
    last = last_step
    if result.epochs > 1 or last is None or last["epoch"] > 1 or last["step"] >= last["steps"]:
        return ""
    setup = getattr(result, "setup_seconds", None)
    took = f"; the setup took {setup:.0f} s of the {minutes:g} min budget" if setup and minutes else ""
    new = new_classes(result.checkpoint)
    what = (f"its new class{'es' if len(new) > 1 else ''} ({', '.join(new)}) had only these steps from untrained "
            "weights: what it marks as such is close to noise" if new else
            f"the model has hardly changed from {'its random weights' if from_scratch else 'the start'}")
    return f"Less than one epoch ran ({last['step']} of {last['steps']} steps{took}): {what}; give a longer budget."


def refit_skipped_text(result: Any, refit_share: float, start_model: bool, minutes: float | None,
                       panel: bool = False) -> str:
    """Why a fine-tuning run's refit (its last part, training on every reviewed slice, validation ones included:
    :mod:`.refit`) did not run when the run planned fewer than 2 epochs, so none was left for it, else ''. The trainer
    says why it skipped a refit that was planned (no epoch beat the start, no time left); a run of one epoch (lung1,
    ``--minutes 1``: the first epoch and the setup took half the minute) planned none, unsaid. ``refit_share``: the
    run's (:func:`~.config.fine_tune_defaults`); only the held-out slices of one case are refitted. ``panel``: worded
    for the napari Fine-tune tab (its *Minutes* field) rather than the command line's options."""
    from .refit import REFIT_SPLITS

    if not start_model or refit_share <= 0 or result.cancelled or result.refit_epochs or not result.checkpoint \
            or getattr(result, "kept_start", False):  # (the start model was kept: the trainer says so)
        return ""
    if getattr(result, "criterion", "val_dice") != "val_dice" or getattr(result, "world_size", 1) > 1:
        return ""
    if not str(result.split).startswith(REFIT_SPLITS) or (result.epochs_planned or result.epochs) >= 2:
        return ""
    if any("refit" in n for n in result.notes):  # (the trainer said why already)
        return ""
    planned = result.epochs_planned or result.epochs
    if minutes:
        epoch_s = max(0.0, result.seconds - (getattr(result, "setup_seconds", 0.0) or 0.0)) / max(1, result.epochs)
        need = -(-((getattr(result, "setup_seconds", 0.0) or 0.0) + 2.5 * epoch_s) // 60)  # (whole minutes, rounded up)
        why = (f"the {minutes:g} min budget fitted {planned} epoch (about {epoch_s / 60:.1f} min each, after a "
               f"{(getattr(result, 'setup_seconds', 0.0) or 0.0) / 60:.1f} min setup)")
        n = max(int(need), int(minutes) + 1)
        more = f"give it {n} minutes or more" if panel else f"give --minutes {n} or more"
    else:
        why, more = f"the run had {planned} epoch", "give it 2 epochs or more" if panel else "give --epochs 2 or more"
    return (f"the refit (the run's last part, training on every reviewed slice, the validation ones included) was "
            f"skipped: {why} and it needs 2, one validated and one on all slices; the model was trained on the "
            f"training slices only. To include it, {more}")

"""What one Fine-tune panel run shares with its worker thread (:class:`Run`), and the checks and names of
its output folder. No Qt here: the worker thread calls :meth:`Run.cleanup`."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

from ..data.out_folder import beside_dataset, dataset_part, dataset_root
from ..inference import CancelToken

RUN_TEXT = "Fine-tune"  # the text of the panel's run button (finetune_widget), which its messages name
MIN_MINUTES = 0.5  # longer than a typical setup (loading, the start model's validation: a few seconds to ~10 s)
STEP_EVERY_S = 0.25  # the progress bar follows the optimizer steps at most this often
RUN_FILES = frozenset({"training_log.csv", "state.json", "state.safetensors"})  # a run's files, model aside


class Run:
    """One run, shared by the panel and the worker thread: its cancel token, whether the panel still exists,
    the last optimizer step, and the output folder's state before the run."""

    def __init__(self, out: Path):
        self.token = CancelToken()
        self.alive = True  # False once the panel is deleted (its viewer closed)
        self.out = out
        self.created = _first_missing(out)  # the top folder this run creates (None: the output folder exists)
        self.last_step: dict | None = None
        self.sent = -float("inf")  # when the panel last heard of a step
        self.removed = False

    def cleanup(self) -> None:
        """No model was saved: remove the output folder (and the parents) this run created, when it holds only
        the run's own files. A folder that existed before, or holds anything else, is left alone."""
        from ..training.out_lock import busy

        out = self.out
        if self.created is None or not out.is_dir() or not {p.name for p in out.iterdir()} <= RUN_FILES or busy(out):
            return  # (busy: another run writes there; this one was refused, its files are not ours)
        for name in RUN_FILES:
            if (out / name).is_file():
                (out / name).unlink()
        folder = out
        while True:
            try:
                folder.rmdir()
            except OSError:  # not empty (something else was written there meanwhile): keep it
                return
            self.removed = True
            if folder == self.created:
                return
            folder = folder.parent

    def removed_text(self) -> str:
        return f" The output folder {self.out} it had created was removed." if self.removed else ""

    def nothing_learned_text(self, res, more: str) -> str:
        """The status of a run that saved no model (its notes aside): cancelled while preparing or in epoch 1, or no
        epoch beat the start model (with a new output layer: the start with an untrained head is no model);
        ``more``: what to add to the dataset (:func:`.finetune_form.more_labels_text`)."""
        before = "n/a" if res.val_dice_before is None else f"{res.val_dice_before:.4f}"
        why = ("it was cancelled while preparing, before training began" if self.last_step is None else
               "it was cancelled during epoch 1, before any epoch finished") if not res.epochs else \
            f"no epoch beat the start model's validation Dice {before}"
        head = "" if res.cancelled else (" and its output layer was new (other classes): the start model with an "
                                         f"untrained output layer is no model. Give more minutes, or {more}")
        val = f" Validation: {validation_text(res)}." if res.epochs else ""  # (what it was judged on: which slices)
        return (f"{'Cancelled: n' if res.cancelled else 'N'}othing was learned ({why}){head}; no model was saved and "
                f"the Segment tab is unchanged.{val}{self.removed_text()}")

    def notes_text(self, res, cfg) -> str:
        """The run's notes as the status lists them, with the sentence ``attnseg finetune`` adds when a run too short
        for two epochs left no time for the refit (:func:`~napari_attnseg.training.short_run.refit_skipped_text`)."""
        from ..training.config import FT_REFIT
        from ..training.short_run import refit_skipped_text

        share = getattr(cfg, "refit", None)
        share = share if share is not None else (FT_REFIT if getattr(cfg, "start_model", None) else 0.0)
        skipped = refit_skipped_text(res, share, bool(getattr(cfg, "start_model", None)), getattr(cfg, "minutes", None),
                                     panel=True)
        return "".join(f"\n- {n}" for n in [*res.notes, *([skipped] if skipped else [])])

    def short_text(self, res, minutes: float | None) -> str:
        """A sentence when less than one whole epoch ran (the budget ended inside epoch 1), else ''."""
        from ..training.short_run import short_run_text

        return short_run_text(res, self.last_step, minutes)


def cancelling(panel, token: CancelToken | None) -> None:
    """Cancel pressed (or the panel undocked): while a run goes, the status says so at once and Cancel is greyed (the
    run stops after its current step: tens of seconds for a 3D model on a CPU), then the token is cancelled."""
    if token is None:
        return
    if panel.running() and panel.cancel_button.enabled and not token.cancelled:
        panel.status.value = ("Cancelling: the run stops after its current step (tens of seconds for a 3D model on a "
                              f"CPU) and keeps the best model so far, if any. {panel.run_button.text} is available again "
                              "then.")
        panel.cancel_button.enabled = False
    token.cancel()


def no_model_result(res):
    """The run's result as the panel keeps it (``panel.result``): when no model was saved (the trainer's ``checkpoint``
    is None), ``kept_start`` False (a run cancelled before its first epoch said True: the start's weights "kept", with
    no file saved); a falsy ``checkpoint`` ('' from an older or stand-in trainer: the current folder) is None too."""
    return res if res.checkpoint else dataclasses.replace(res, checkpoint=None, kept_start=False)


def validation_text(res) -> str:
    """What the run validated on, for the status: the held-out slices (rows of a 2D image) the split names and what
    they hold, e.g. "slices 23,34: 2 labelled slices, 1 with foreground (329 foreground voxels)"."""
    held = re.search(r": validation \S+ slices ([0-9,-]+);", res.split or "")
    what = getattr(res, "validation", "") or ""
    if not held:
        return what or res.split
    unit = "slices" if not what or "slice" in what else "rows"
    return f"{unit} {held.group(1)}" + (f": {what}" if what else "")


def panel_closed(current: list) -> None:
    """The panel was deleted (the viewer closed): cancel its run; its callbacks check ``alive``."""
    run = current[0]
    if run is not None:
        run.alive = False
        run.token.cancel()


def _first_missing(path: Path) -> Path | None:
    """The top-most folder of ``path`` that does not exist yet (``path`` itself, or a parent), or None."""
    missing = None
    for p in (path, *path.parents):
        if p.exists():
            break
        missing = p
    return missing


def output_problem(out: str, dataset: str) -> str | None:
    """Why ``out`` cannot take a new model (a message for the panel), or None. Accepted: a new folder, an empty
    one, or one holding only an earlier run's files without a model (training_log.csv, state.*; replaced), outside the
    dataset or a folder of its own in it (``DS/model``, as ``attnseg finetune --out`` takes: :mod:`~napari_attnseg.data.out_folder`)."""
    if not out:
        return "Choose an output folder for the new model (a new folder in your models folder is proposed)."
    path = Path(out).expanduser()
    if not path.is_absolute():
        return f"Output folder {out!r} is not a full path; choose the folder with the button next to the field."
    if path.exists() and not path.is_dir():
        return f"Output folder {out} is a file, not a folder; choose a new folder for the model."
    if (part := dataset_part(path, Path(dataset).expanduser())) is not None:  # (the rule `attnseg finetune --out` has)
        what = f"the dataset {dataset} itself" if not part else f"inside the dataset's {part}/ folder ({dataset})"
        return (f"Output folder {out} is {what}: the model's files would be mixed with the dataset's files inside the "
                f"dataset; choose a folder beside it (e.g. {beside_dataset(Path(dataset).expanduser())}) or a new "
                f"folder of its own in it (e.g. {dataset_root(Path(dataset).expanduser()) / 'model'}).")
    from ..training.out_lock import busy

    if busy(path):  # (another panel's run, or attnseg finetune: they would replace each other's model)
        return f"A fine-tuning run is writing to {out} (another panel or a terminal); choose another output folder."
    if (path / "best.safetensors").exists():
        return f"{out} already holds a model; choose a new output folder so it is not overwritten."
    from ..models.registry import unlisted_run

    if clash := unlisted_run(path):  # (the model would be hidden behind the other one of that name)
        return f"Output folder {out}: {clash}, so the new model would not be listed; choose another name."
    others = sorted(p.name for p in path.iterdir() if p.name not in RUN_FILES) if path.is_dir() else []
    if others:
        shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
        return (f"Output folder {out} already holds other files ({shown}); choose a new or an empty folder, so the "
                "model is not written among them.")
    return None


def dataset_problem(folder: str) -> str | None:
    """Why ``folder`` cannot be fine-tuned on now (a message for the panel), or None: a missing folder, or one an
    export is writing to (the run would read what it has not finished). A folder that is no dataset is said by the
    run, at once (reading the dataset is its first step)."""
    from ..data.manifest import export_running

    path = Path(folder).expanduser()
    if not path.is_dir():
        return (f"Dataset folder {folder} does not exist; choose a dataset's folder (Browse...), or export one there "
                "first (Correct and export > Export).")
    if export_running(path):
        return (f"An export is writing to the dataset {folder}; wait until it has finished (the Correct and export "
                f"tab says so), then press {RUN_TEXT} again.")
    return None


def start_problem(label: str, start: str) -> str | None:
    """Why the start model (list entry ``label``: a bundled name, a models-folder name or a checkpoint path) cannot
    be found now, or None: it was moved or deleted after it was listed."""
    from ..checkpoint import resolve_model_path

    try:
        resolve_model_path(start)
    except Exception:  # (CheckpointError: gone from its folder, or its file missing)
        where = f"your models folder {models_folder()}" if Path(start).name == start else Path(start).parent
        return (f"Start model {label!r} is no longer in {where} (moved or deleted since it was listed); choose "
                "another start model, or load its file again with the Segment tab's Load checkpoint....")
    return None


def models_folder() -> Path:
    """The user models folder (``attnseg models``): where the panel proposes new models, so that a restarted
    napari lists them by name."""
    from ..models.registry import user_models_dir

    return user_models_dir().expanduser()


def proposed_model(start: str, taken, name: str = "") -> tuple[str, Path]:
    """The new model's name and output folder. Without a typed ``name``: ``<start>-finetuned`` (from a model
    fine-tuned already, its stem again: round 2 of ``brain-finetuned`` is ``brain-finetuned-2``, not
    ``brain-finetuned-finetuned``), the first name that no listed model (``taken``) and nothing in the user models
    folder has. The folder is ``<models folder>/<name>`` (a free one for a typed name), so ``attnseg models`` and
    the panels list the model by that name after a restart too; an earlier model is never proposed over."""
    from ..models.registry import bundled_models, model_name_of

    models, bundled = models_folder(), bundled_models()

    def free(base: str, also=()) -> str:  # a name no bundled model, no listed one and nothing in the folder has
        cand, n = base, 2
        while cand in bundled or cand in also or any((models / f"{cand}{e}").exists() for e in ("", ".safetensors",
                                                                                              ".json")):
            cand, n = f"{base}-{n}", n + 1
        return cand

    if name:  # (a typed name taken by a file of the folder or a bundled model: listed under another, free one)
        return name, models / free(model_name_of(name))
    stem = re.sub(r"-finetuned(-[0-9]+)?$", "", model_name_of(start)) + "-finetuned"
    name = free(stem, taken)
    return name, models / name


def in_models_folder(checkpoint: str) -> bool:
    return Path(checkpoint).parent.parent.resolve() == models_folder().resolve()


def listed_text(checkpoint: str) -> str:
    """Where the model is found again after the viewer is closed (a sentence)."""
    from ..models.registry import model_name_of

    folder, models = Path(checkpoint).parent, models_folder()
    if in_models_folder(checkpoint):
        return (f"It is in your models folder as {folder.name!r}: the Segment and Fine-tune tabs list it by that name "
                f"after a restart too (attnseg predict --model {folder.name}).")
    return (f"It is not in your models folder ({models}), so a restarted napari does not list it: load "
            f"{checkpoint} with Load checkpoint..., or add it once with: attnseg models --add {shlex.quote(str(folder))} --name "
            f"{model_name_of(folder.name)}.")

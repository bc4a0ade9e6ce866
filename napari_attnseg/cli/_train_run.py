"""How ``attnseg train`` and ``attnseg finetune`` run and report: the progress bar over the run's steps, the split
said before the first epoch, what Ctrl+C left in OUT, the summary and the hints after the run. The arguments and
the config they make are in :mod:`._train_common`, which re-exports these names."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path


def is_main_process() -> bool:
    """Under torchrun only rank 0 prints."""
    return os.environ.get("RANK", "0") == "0"


class ProgressBar:
    """A tqdm bar on stderr over the run's steps, with the epoch, the loss and the validation Dice.

    With ``--minutes`` the number of epochs is known after the first one; until then the bar counts
    steps without a total. After every epoch one line is written above the bar (what a log keeps).
    """

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.bar = None
        self.steps = None  # steps per epoch, from the step reports
        self.val, self.best, self.last = None, None, None  # last: the last step's report

    def _draw(self, info: dict, position: int | None) -> None:
        steps = self.steps
        total = info["epochs"] * steps if (info["epochs"] and steps) else None
        if self.bar is None:
            from tqdm import tqdm

            tty = hasattr(self.stream, "isatty") and self.stream.isatty()
            # in a log file (not a terminal) the bar is redrawn at most once a minute
            # drawn first with its description and loss (was: a bare "0step [00:00, ?step/s]" line before them)
            self.bar = tqdm(total=total, unit="step", file=self.stream, dynamic_ncols=True,
                            mininterval=0.1 if tty else 60.0, delay=1e-9)
            first = True
        else:
            first = False
        bar = self.bar
        if total != bar.total:
            bar.total = total
        if info["epochs"]:
            head = f"epoch {info['epoch']}/{info['epochs']}"
        else:
            head = f"epoch {info['epoch']} ({info['elapsed'] / 60:.1f}/{info['budget'] / 60:.1f} min)"
        bar.set_description_str(head, refresh=False)  # (set_description adds ': ' and tqdm another: "min): : 1step")
        val = "" if self.val is None else f", val Dice {self.val:.4f} (best {self.best:.4f})"
        bar.set_postfix_str(f"loss {info['loss']:.4f}{val}", refresh=False)
        bar.update(max(0, (position if position is not None else bar.n) - bar.n))
        if first:
            bar.refresh()

    def step(self, info: dict) -> None:
        self.steps, self.last = info["steps"], info
        self._draw(info, (info["epoch"] - 1) * info["steps"] + info["step"])
        if info.get("warning"):  # the first epoch will not fit in the budget (said two steps in)
            self.bar.write(f"warning: {info['warning']}", file=self.stream)

    def _done(self, info: dict) -> int | None:
        """Steps run by the end of this epoch (one the time budget cut short counts its steps only)."""
        if not self.steps:
            return None
        return (info["epoch"] - 1) * self.steps + info.get("steps_done", self.steps)

    def epoch(self, info: dict) -> None:
        if info.get("refit"):  # the last epochs train on the validation slices too: nothing to validate
            self._draw(info, self._done(info))
            self.bar.write(f"epoch {info['epoch']}/{info['epochs'] or '?'} done  loss {info['loss']:.4f}  "
                           "(on all reviewed slices, validation ones included)", file=self.stream)
            return
        self.val, self.best = info["val_dice"], info["best"]
        self._draw(info, self._done(info))
        self.bar.write(f"epoch {info['epoch']}/{info['epochs'] or '?'} done  loss {info['loss']:.4f}  "
                       f"val Dice {self.val:.4f} (best {self.best:.4f})", file=self.stream)

    def finish(self) -> None:
        """The run is over: the bar ends full. A budget that ended inside an epoch (or before the epochs planned)
        left it at 4/25 steps with a time remaining (3 minutes) for work that would never run."""
        if self.bar is not None and self.bar.total is not None and self.bar.n < self.bar.total:
            self.bar.total = self.bar.n
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run_training(cfg) -> int:
    """Run the trainer with a progress bar and print the summary (rank 0 only under torchrun); Ctrl+C says what the
    run left in OUT (the best model so far, usable as it is, or none) and ends with status 130."""
    from ..inference.checks import fine_tuning_advice
    from ..training import train
    from ..training.short_run import short_run_text

    main = is_main_process()
    bar = ProgressBar()
    said: list[str] = []  # the split and its warnings as print_split wrote them, before the first epoch

    def on_split(split) -> None:
        print_split(split)
        said.extend([split.describe(), *split.warnings])

    try:
        with fine_tuning_advice():  # (the run segments its own data: a fit warning advises for training on it)
            result = train(cfg, progress=bar.epoch if main else None, on_step=bar.step if main else None,
                           on_split=on_split if main else None)
        bar.finish()
    except KeyboardInterrupt:
        bar.close()
        if main:
            print(f"attnseg {'finetune' if cfg.start_model else 'train'}: interrupted; {interrupted_message(cfg)}",
                  file=sys.stderr)
        return 130
    finally:
        bar.close()
    if main:
        from ..training.config import FT_REFIT
        from ..training.short_run import refit_skipped_text

        share = getattr(cfg, "refit", None)  # (fine_tune_defaults' choice: --refit, else the fine-tuning default)
        share = share if share is not None else (FT_REFIT if cfg.start_model else 0.0)
        skipped = refit_skipped_text(result, share, bool(cfg.start_model), cfg.minutes)
        if skipped:  # (a run of one epoch planned no refit, unsaid: the model never saw its validation slices)
            result.notes.append(skipped)
        print_summary(result, cfg.dataset, said=said)
        last = bar.last  # less than one epoch (--minutes 0.2: 4 of 25 steps) wrote a model close to its start, unsaid
        short = short_run_text(result, last, cfg.minutes, from_scratch=not cfg.start_model) if result.checkpoint else ""
        if short:  # (the Fine-tune tab's words: a class the run added is close to noise, the rest close to the start)
            print(f"warning: {short[0].lower()}{short[1:].rstrip('.')} (--minutes).", file=sys.stderr)
        hint = scratch_hint(cfg, result)
        if hint:
            print(hint, file=sys.stderr)
    return 0


def interrupted_message(cfg) -> str:
    """What an interrupted run left in ``cfg.out`` and how to go on (the generic "the epochs finished so far are saved"
    was said when none had, and never that best.safetensors is usable); the bare log of a run just begun is removed."""
    out = Path(cfg.out)
    log, best, state = out / "training_log.csv", out / "best.safetensors", out / "state.safetensors"
    rows = max(0, len(log.read_text().splitlines()) - 1) if log.is_file() else 0
    again = "run the same command with --resume to go on (or --overwrite to start again)"
    if best.is_file():
        try:
            card = json.loads((out / "best.json").read_text())
        except (OSError, ValueError):
            card = {}
        run, dice = card.get("training") or {}, (card.get("metrics") or {}).get("val_dice")
        said = [f"epoch {run['best_epoch']}" if run.get("best_epoch") else "",
                f"validation Dice {dice:.4f}" if isinstance(dice, (int, float)) else "",
                f"the start {run['val_dice_before']:.4f}" if isinstance(run.get("val_dice_before"), float) else ""]
        said = ", ".join(p for p in said if p)
        refit = (": the run's last part, training on every reviewed slice, did not happen"
                 if cfg.start_model and getattr(cfg, "refit", None) != 0 else "")
        return (f"{best} is the best model so far{f' ({said})' if said else ''}, usable as it is (attnseg predict "
                f"--model {shlex.quote(str(best))}; its card says finished: false{refit}); {again}.")
    if rows and state.is_file():
        beat = " none of which beat the start model's validation Dice:" if cfg.start_model else ""
        return f"{rows} epoch(s) finished,{beat} no model was written ({out} holds the run's state and log); {again}."
    if log.is_file() and not rows and not state.exists():  # the header the run began with: not a model
        log.unlink()
    return "no epoch had finished: no model was written; run the same command again to start over."


def print_split(split) -> None:
    """The split and its warnings on stderr before the first epoch: a validation that cannot measure (one slice with
    foreground, unreviewed slices, none: the training loss chooses) is said before the budget is spent, while the run
    can still be stopped and given other --val-slices / --val-region. The summary repeats them only on a stdout of
    its own (see :func:`print_summary`)."""
    print(f"split: {split.describe()}", file=sys.stderr)
    for warning in split.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    sys.stderr.flush()


def scratch_hint(cfg, result) -> str | None:
    """A model trained from scratch that finds (almost) nothing: point at fine-tuning a bundled model of the
    same dimensionality on a few corrected slices instead (lung1, 4 CPU minutes: from scratch on every slice,
    validation Dice 0.0007; nuclei-2d fine-tuned on every slice, 3 epochs, nothing learned; fine-tuned on
    tumour slices 32 and 34 plus two suggested ones, 15-19 epochs: 0.68 on slice 33, docs/finetuning.md)."""
    if cfg.start_model or result.cancelled or getattr(result, "criterion", "val_dice") != "val_dice":
        return None
    if (result.val_dice_after or 0.0) >= 0.1 or not result.checkpoint:
        return None
    from ..checkpoint import read_card
    from ..models.registry import bundled_models

    config = (trained := read_card(result.checkpoint)).config
    dims, channels = config.get("spatial_dims"), config.get("in_channels", 1)
    ct = (trained.normalization or {}).get("scheme") == "ct"
    # one that takes the dataset's channels; a lung CT trained in 3D was sent to brain-mri-3d (a skull-stripping T1
    # model); a 2D model fine-tunes on volumes slice by slice (nuclei-2d on lung1: docs/finetuning.md)
    starts = [name for d in ((dims, 2) if dims == 3 else (dims,)) for name, card in bundled_models().items()
              if (c := card.get("config", {})).get("spatial_dims") == d and not c.get("prompts")
              and c.get("in_channels", 1) == channels
              and not (ct and (card.get("brain_extraction") or (card.get("normalization") or {}).get("nonzero")))]
    if not starts:
        return None
    exported, whole = dataset_kind(cfg.dataset)
    few = (" On a volume, export a few corrected slices (--reviewed-slices, tumour and tumour-free) rather than every "
           "slice: each epoch is shorter, so the same minutes train many more." if exported and whole else "")
    return (f"hint: a model trained from scratch needs far more data or time than this run had (validation Dice "
            f"{result.val_dice_after:.4f}). Start from a trained model instead; its encoder is kept and its output "
            f"layer is made for your classes: attnseg finetune {shlex.quote(str(cfg.dataset))} --model {starts[0]} --out DIR "
            f"--minutes M.{few}")


def dataset_kind(dataset) -> tuple[bool, bool]:
    """Whether ``dataset`` was exported by this project (a manifest.json), and whether its first case is a volume
    labelled on every slice; (False, False) for a dataset made elsewhere (nnU-Net, Decathlon, a MONAI datalist,
    images/ + masks/: never exported here) or one that cannot be read. Only an exported volume of every slice can be
    exported again as a few reviewed slices (2D images have no slices; reviewed slices are a few already)."""
    from ..data.manifest import read_manifest

    try:
        root = Path(dataset)
        manifest = read_manifest(root.parent if root.is_file() else root)
        case = manifest["cases"][0] if manifest is not None else None
    except Exception:  # noqa: BLE001 - (the run read it; a hint is not worth a traceback)
        return False, False
    if case is None:
        return False, False
    return True, len(case.get("shape") or ()) == 3 and case.get("reviewed_slices") is None


def _per_class(dice, result) -> str:
    """Dice per foreground class; with several, each named by the dataset's label table ("oedema 0.7311")."""
    names = list(getattr(result, "class_names", None) or [])[1:]
    dice = list(dice or [])
    if len(names) != len(dice) or len(names) < 2:
        return ", ".join(f"{d:.4f}" for d in dice)
    return ", ".join(f"{n} {d:.4f}" for n, d in zip(names, dice))


def one_stream() -> bool:
    """Whether stdout and stderr are one file (a terminal, or ``> log 2>&1``): what stderr said is then in front of
    the reader already. False when either is not a file (a test's capture: each is read alone)."""
    try:
        out, err = os.fstat(sys.stdout.fileno()), os.fstat(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # (io.UnsupportedOperation is both)
        return False
    return (out.st_dev, out.st_ino) == (err.st_dev, err.st_ino)


def print_summary(result, dataset: str | None = None, said: list[str] | None = None) -> None:
    """The run's summary on stdout, its warnings on stderr; ``dataset`` (the run's) words what to add when the
    model finds nothing: reviewed slices of an export, labelled cases of a dataset made elsewhere. ``said``: the
    split and its warnings :func:`print_split` wrote on stderr before the first epoch; where stdout is that same
    terminal or file, the summary refers to them instead of printing them (and the warnings, as notes) a second time.
    A stdout of its own (``> summary.txt``) is the run's record: it keeps them in full."""
    before = "n/a (trained from scratch)" if result.val_dice_before is None else f"{result.val_dice_before:.4f}"
    said = said if said and said[0] == result.split and one_stream() else []
    warned = said[1:]
    if said:
        n = len(warned)
        what = "" if not n else ", with its warning" if n == 1 else f", with its {n} warnings"
        print(f"split: as said before the first epoch{what}")
    else:
        print(f"split: {result.split}")
    print(f"validation Dice: start {before} -> result {result.val_dice_after:.4f} (per class "
          f"{_per_class(result.val_dice_per_class, result)}) after {result.epochs} epoch{'' if result.epochs == 1 else 's'}, "
          f"{result.seconds / 60:.1f} min, {result.precision}"
          f"{f', {result.world_size} processes' if result.world_size > 1 else ''}"
          f"{' (cancelled)' if result.cancelled else ''}")
    if result.test_dice:
        before = ""
        if result.test_dice_before:
            before = "start " + _per_class(result.test_dice_before, result) + " -> result "
        print("test Dice per class: " + before + _per_class(result.test_dice, result))
    for note in result.notes:
        if note not in warned:
            print(f"note: {note}")
    if result.reproduce:
        print(f"reproduce: {result.reproduce}")
    print(f"checkpoint: {result.checkpoint or '(none written)'}")
    if result.checkpoint:
        from ..models.registry import user_models_dir

        run_dir = Path(result.checkpoint).parent
        if run_dir.parent.resolve() != user_models_dir().resolve():  # (a run written there is listed already)
            from ..models.registry import model_name_of  # (always a valid --name: a card's may not be)

            print(f"to use it by name (attnseg predict --model NAME, napari's model list): attnseg models --add "
                  f"{shlex.quote(str(run_dir))} --name {model_name_of(run_dir.name)}")
    if getattr(result, "criterion", "val_dice") == "val_dice" and not (result.val_dice_after or 0) > 0:
        more = ("add labelled cases that hold the object to the dataset" if dataset and not dataset_kind(dataset)[0]
                else "review more slices that hold the object")
        print(f"warning: the model finds nothing on the validation set (Dice 0): it is not usable yet. Give it more "
              f"time (--minutes), {more}, or check the labels.", file=sys.stderr)

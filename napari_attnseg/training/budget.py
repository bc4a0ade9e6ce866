"""The trainer's wall-clock budget (``TrainConfig.minutes``): what is left once a validation and the end of
the run are set aside (a mixin of :class:`~.trainer.Trainer`, which sets ``_deadline``, ``_val_s``,
``_test_s`` and ``_save_s``)."""

from __future__ import annotations

import math
import time


class TimeBudget:
    def _final_s(self) -> float:
        """Seconds the end of the run needs after the last step's validation: the test evaluation (measured on
        the start model, else estimated from the validation by size) and writing the checkpoint."""
        test = self._test_s
        if test is None:
            test = 0.0
            if self.test_parts:
                size = sum(img.size for img, _, _ in self.val_parts) or 1
                test = self._val_s * sum(img.size for img, _, _ in self.test_parts) / size
        return test + 2 * self._save_s  # the checkpoint is read back and written once more at the end

    def _time_left(self) -> float:
        """Seconds of the budget left for training, once a validation and the end of the run are set aside."""
        if self._deadline is None:
            return math.inf
        return self._deadline - time.perf_counter() - self._val_s - self._final_s()

    def _plan_epochs(self, epoch: int, loop_start: float, budget: float) -> int:
        """A minutes budget: the epochs that fit in the time left at the first one's pace (its validation
        included), the refit's closing validation set aside. When none more fits although much of the budget
        is left (a busy machine makes epochs slow), the notes say so instead of the run ending unexplained."""
        first = time.perf_counter() - loop_start
        room = (self._deadline - time.perf_counter() - self._final_s()
                - (self._val_s if self._refit_applies() else 0.0))  # the refit ends with a validation
        more = 0 if self._cut else max(0, math.floor(room / max(first, 1e-6)))
        if not more and not self._cut and room > 0.2 * budget:
            self.notes.append(f"epoch {epoch} took {_duration(first)} with its validation (is the machine busy?): the "
                              f"{_duration(room)} left would not hold another, so the run ends early and there is no "
                              "refit; give more minutes, or a number of epochs (--epochs N)")
        return epoch + more

    def _cut_note(self) -> str:
        """The note of a budget that ended inside an epoch; inside the first one also what a whole epoch takes at
        this pace (a 3D step on a CPU takes seconds: 25 of them do not fit in a 1-minute budget) and what the
        classes the run added (a new output row) got."""
        epoch, steps = self._cut
        n = self.cfg.iters_per_epoch
        text = f"the time budget ended during epoch {epoch}, after {steps} of {n} steps"
        pace = getattr(self, "_step_pace", None)
        if epoch != 1 or not pace:
            return text
        one = n * pace + self._val_s  # one whole epoch with its validation, at this run's pace
        need = math.ceil(2 * (self._setup_s + one + self._final_s()) / 60) / 2  # whole half minutes
        new = list(getattr(self, "new_classes", []) or [])
        said = (f"; the new class{'es' if len(new) > 1 else ''} {', '.join(new)} had only these steps from random "
                "weights: what the model marks as such is close to noise") if new else ""
        return (f"{text} ({pace:.1f} s a step here: one epoch with its validation takes about {_duration(one)}, so "
                f"a budget of at least {need:g} min is needed for one whole epoch, several for the model to learn)"
                f"{said}")

    def _pace_warning(self, pace: float, steps_left: int, epoch: int) -> str:
        """Said once, from two steps into a run with a minutes budget, when the rest of its first epoch will not fit in
        what is left (a 3D model on a CPU: 45 s a step, 25 steps an epoch, a 5-minute budget), so the user can cancel
        and give more minutes at once instead of learning it from the summary; '' when it fits. ``pace``: seconds a
        step since the first (cold) one; ``steps_left``: the epoch's steps still to run; ``epoch``: its index (only
        the run's first epoch is looked at: later ones are planned at the pace measured)."""
        first = getattr(self, "_pace_epoch", None)
        if first is None:
            first = self._pace_epoch = epoch
        if self._deadline is None or epoch != first or getattr(self, "_pace_said", False) or self.dist.world_size > 1:
            return ""
        left = self._deadline - time.perf_counter() - self._final_s()
        if steps_left * pace + self._val_s <= left:
            return ""
        self._pace_said = True
        n = self.cfg.iters_per_epoch
        one = n * pace + self._val_s  # one whole epoch with its validation, at this pace
        need = math.ceil(2 * (self._setup_s + one + self._final_s()) / 60) / 2  # whole half minutes
        return (f"{pace:.1f} s a step here: one epoch ({n} steps) with its validation takes about {_duration(one)}, "
                f"more than the {_duration(max(0.0, left))} left of the budget, so the run will end inside its first "
                f"epoch and the model will hardly change. Cancel and give at least {need:g} min for one epoch "
                "(several for the model to learn), or fine-tune on a GPU.")

    def _timed_save(self, *args, **kwargs) -> None:
        t = time.perf_counter()
        self._save(*args, **kwargs)
        self._save_s = time.perf_counter() - t


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{round(seconds / 60, 1):g} min"

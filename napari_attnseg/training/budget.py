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

    def _timed_save(self, *args, **kwargs) -> None:
        t = time.perf_counter()
        self._save(*args, **kwargs)
        self._save_s = time.perf_counter() - t


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:g} min"

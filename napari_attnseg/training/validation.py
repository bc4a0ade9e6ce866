"""How a run measures its model: validation (and the test score) through the inference engine, so the Dice
it reports is the Dice a user gets, with the time each took kept for the budget (:mod:`.budget`); the
score that picks the best epoch; the bf16 check on the CPU. :class:`Validation` is a mixin of
:class:`~.trainer.Trainer` (which sets ``val_parts``, ``test_parts``, ``split``, ``prompter`` and the model)."""

from __future__ import annotations

import math
import time

import numpy as np
from torch import nn

from .steps import _mean, dice_counts


class Validation:
    """Validation, test and the selection score of a run (through ``predict``, as a user segments)."""

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated and saved: the moving average when there is one."""
        return self.ema_model if self.ema_model is not None else self.model

    def evaluate(self, parts, precision: str = "fp32") -> list[float]:
        """Dice per foreground class over whole parts (segmented in context), through the inference engine."""
        t = time.perf_counter()
        try:
            return self._evaluate(parts, precision)
        finally:  # how long a validation (test) takes: the budget keeps that much for the last one
            if parts is self.val_parts:
                self._val_s = time.perf_counter() - t
            elif parts is self.test_parts:
                self._test_s = time.perf_counter() - t

    def _evaluate(self, parts, precision: str) -> list[float]:
        from ..inference import predict

        if self.cfg.prompts:  # issue 18: Dice after robot clicks instead
            return self.prompter.evaluate(self.eval_model, parts)
        # counts pooled over the parts of a case (held-out slices are one validation), Dice averaged over cases
        counts: dict[int, np.ndarray] = {}
        for (img, lab, inner), case in zip(parts, self._part_cases(parts)):
            pred = predict(self.eval_model, img if img.shape[0] > 1 else img[0], mode=self.mode, device=self.device,
                           precision=precision, normalization={"scheme": "none"}, return_probabilities=False,
                           tile=self.tile, cancel=self.cancel, brain_extraction=False)  # stripped already: .brainprep
            c = dice_counts(self._brain_only(pred.labels, img)[inner], lab, self.n_classes, self.ignore)
            counts[case] = counts[case] + c if case in counts else c
        self.model.train()
        per_case = [[float("nan") if d == 0 else 2.0 * i / d for i, d in cnt] for cnt in counts.values()]
        return [_mean(c) for c in zip(*per_case)]

    def _part_cases(self, parts) -> list[int]:
        if getattr(parts, "cases", None) is not None:  # .valblocks.EvalParts: a big part stands for several blocks
            return parts.cases
        src = self.split.val if parts is self.val_parts else self.split.test if parts is self.test_parts else None
        return [p.case for p in src] if src is not None and len(src) == len(parts) else list(range(len(parts)))

    @staticmethod
    def _score(per_class: list[float]) -> float:
        m = _mean(per_class)
        return 1.0 if math.isnan(m) else m  # no class present in labels or prediction: they agree

    def _check_bf16(self, before_fp32: float | None) -> None:
        """bf16 on the CPU: keep it only if the start model's validation Dice under bf16 stays within 0.01."""
        if before_fp32 is None:
            return
        bf = self._score(self.evaluate(self.val_parts, precision="bf16"))
        if abs(bf - before_fp32) > 0.01:
            self.precision = "fp32"
            self.notes.append(f"bf16 changed the start model's validation Dice ({before_fp32:.4f} -> {bf:.4f}); "
                              "trained in fp32")

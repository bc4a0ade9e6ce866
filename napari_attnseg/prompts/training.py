"""The trainer's prompt mode (``TrainConfig.prompts``): conversion, simulated clicks, click validation.

The trainer calls three things (and nothing else changes there): :meth:`PromptTraining.attach` after
building the model, :meth:`batch` on every batch, :meth:`evaluate` instead of the whole-part Dice.
Validation scores what a user gets: on each object of a validation part, the robot clicker from an
empty mask, the Dice after 1 and after 3 clicks averaged (one number, reported as ``val_dice``).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from scipy import ndimage as ndi

from .convert import is_promptable, make_promptable
from .segment import segment_with_prompts
from .simulate import ClickSimulator, robot_session

MAX_VAL_OBJECTS = 60


class PromptTraining:
    def __init__(self, trainer):
        self.trainer = trainer
        model = trainer.model
        # the automatic model gives the "previous mask" of simulated sessions: a frozen copy of the start
        self.auto = None if is_promptable(model) else copy.deepcopy(model).eval()
        if self.auto is not None:
            for p in self.auto.parameters():
                p.requires_grad_(False)
        make_promptable(model, **dict(trainer.cfg.model_config.get("prompts", {})))  # variants: channels/prior
        trainer.notes.append("prompt training (simulated clicks); val_dice = mean Dice after 1 and 3 robot clicks "
                             "per validation object not cut by the part's sides, from an empty mask")
        self.sim = None
        # the previous mask of a new object, as the card will say (checkpoint.ModelCard.prompt_init)
        self.init = ("threshold" if trainer.cfg.prompt_threshold > 0
                     else getattr(getattr(trainer, "base_card", None), "prompt_init", None))
        if trainer.cfg.prompt_threshold > 0:
            trainer.notes.append(f"previous mask of {trainer.cfg.prompt_threshold:.0%} of the simulated sessions: the "
                                 "threshold guess under the first click (card prompt_init 'threshold'; validation too)")

    def batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.trainer
        if self.sim is None:
            if self.auto is not None:
                self.auto.to(t.device)
            self.sim = ClickSimulator(t.model, self.auto, t.loss_ignore, t.rng,
                                      radius=t.model.prompt_options.get("radius", 5.0),
                                      p_threshold=t.cfg.prompt_threshold)
        self.sim.rng = t.rng  # the trainer may replace its generator on resume
        return self.sim(x, y)

    def evaluate(self, model, parts) -> list[float]:
        out = [click_score(model, parts, self.init)]
        self.trainer.model.train()
        return out


def click_score(model, parts, prompt_init: str | None = None) -> float:
    """Mean over the objects of ``parts`` ((image (C, *spatial) normalised, labels of the inner box, inner
    slices)) of (Dice after 1 click + Dice after 3 clicks) / 2, robot clicker from an empty mask
    (``prompt_init`` "threshold": the first click starts from the threshold guess, as the card will say)."""
    scores = []
    dims = model.spatial_dims
    for img, lab, inner in parts:
        if lab.ndim != dims:
            continue
        cc, n = ndi.label(lab > 0)
        sizes = np.bincount(cc.ravel(), minlength=n + 1)[1:]
        cut = set()  # objects cut by the part's sides: their reference is partial, skip them
        for d in range(lab.ndim):
            cut |= set(np.unique(np.take(cc, 0, axis=d))) | set(np.unique(np.take(cc, -1, axis=d)))
        ids = [i + 1 for i in np.flatnonzero(sizes >= 10) if i + 1 not in cut][:MAX_VAL_OBJECTS]
        for i in ids:
            target = np.zeros(img.shape[1:], bool)
            target[inner] = cc == i

            def seg(points, labels, previous, img=img):
                return segment_with_prompts(model, img, points, labels, previous=previous, attention=False,
                                            normalized=True, prompt_init=prompt_init).mask

            ious, _ = robot_session(seg, target, None, max_clicks=3)
            dice = [2 * v / (1 + v) for v in ious]
            scores.append((dice[min(1, len(dice) - 1)] + dice[min(3, len(dice) - 1)]) / 2)
    return float(np.mean(scores)) if scores else float("nan")

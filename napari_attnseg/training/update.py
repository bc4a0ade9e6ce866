"""One optimizer step of a run (mixed precision, the L2-SP pull towards the start weights, batch-norm
statistics frozen when fine-tuning, gradient clipping) and the moving average of the weights
(``TrainConfig.ema``). :class:`WeightUpdate` is a mixin of :class:`~.trainer.Trainer` (which sets the
model, ``net``, ``opt``, ``scaler``, ``precision``, ``settings`` and ``start_weights``)."""

from __future__ import annotations

import torch
from torch import nn


class WeightUpdate:
    """The optimizer step and the moving average of the weights."""

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """One optimizer step on the batch ``(x, y)``; returns its loss (the L2-SP pull included)."""
        amp = torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16,
                             enabled=self.precision != "fp32")
        if self.settings["freeze_bn"] and self.cfg.start_model:
            for m in self.model.modules():  # running statistics stay the start model's (affine still learns)
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        with amp:
            loss = self.net(x, y)
        if self.start_weights is not None:
            pull = sum(((p - self.start_weights[n]) ** 2).sum() for n, p in self.model.named_parameters()
                       if n in self.start_weights)
            loss = loss + self.settings["l2sp"] * pull
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        return float(loss.detach())

    def _update_ema(self, steps: int) -> None:
        # the decay ramps up over the first steps, so the average does not remember the random start
        d = min(self.cfg.ema, (1 + steps) / (10 + steps))
        with torch.no_grad():
            for e, p in zip(self.ema_model.parameters(), self.model.parameters()):
                e.lerp_(p.detach(), 1 - d)
            for e, b in zip(self.ema_model.buffers(), self.model.buffers()):
                if e.is_floating_point():
                    e.lerp_(b, 1 - d)
                else:
                    e.copy_(b)

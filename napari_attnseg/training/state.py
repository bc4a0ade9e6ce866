"""Resumable training state without pickle: tensors (model, AdamW moments, torch RNG states) in
``state.safetensors``; everything else (epoch, schedule, best Dice, numpy RNG state, loss scaler,
optimizer hyper-parameters) as JSON in that file's metadata, which is what resuming reads, and in
``state.json`` for people. The file is replaced atomically, so a run killed while saving resumes
from the previous epoch."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .._files import atomic_write
from ..errors import DatasetError

STATE_TENSORS = "state.safetensors"
STATE_JSON = "state.json"


def save_state(folder: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, info: dict,
               rng: dict[str, torch.Tensor] | None = None, ema: torch.nn.Module | None = None) -> None:
    """Write the state of a run after an epoch. ``info`` must be JSON-serialisable; ``ema`` is the
    moving average of the weights, when the run keeps one."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    sd = opt.state_dict()
    for pid, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"opt.{pid}.{key}"] = val.detach().cpu().contiguous()
    for name, t in (rng or {}).items():
        tensors[f"rng.{name}"] = t.detach().cpu().contiguous()
    meta = {"info": info, "param_groups": sd["param_groups"]}
    text = json.dumps(meta)
    # the JSON travels inside the tensor file too, so one rename commits the whole state
    atomic_write(folder / STATE_TENSORS, lambda tmp: save_file(tensors, tmp, metadata={"state": text}))
    atomic_write(folder / STATE_JSON, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=1)))


def has_state(folder: Path) -> bool:
    return (folder / STATE_TENSORS).exists()


def load_state(folder: Path, model: torch.nn.Module, opt: torch.optim.Optimizer,
               ema: torch.nn.Module | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """Restore model, optimizer (and the weights' moving average) in place; return (info, rng tensors)."""
    try:
        from safetensors import safe_open

        tensors = load_file(str(folder / STATE_TENSORS))
        with safe_open(str(folder / STATE_TENSORS), "pt") as f:
            meta = json.loads(f.metadata()["state"])
    except Exception as exc:  # a foreign or damaged file: say so instead of a traceback
        raise DatasetError(f"Cannot resume from {folder}: its training state is unreadable ({exc}). "
                           "Start again without --resume.") from None
    own = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(own)
        if ema is not None:
            ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    except RuntimeError as exc:
        raise DatasetError(f"Cannot resume from {folder}: its state belongs to a different model ({exc}).") from None
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, key = k.split(".", 2)
            state.setdefault(int(pid), {})[key] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    rng = {k[4:]: v for k, v in tensors.items() if k.startswith("rng.")}
    return meta["info"], rng


class Resume:
    """Trainer mixin: continue a run from the state saved in its output folder (``--resume``)."""

    def _resume(self, s: dict, fingerprint: dict, budget: float | None, main: bool) -> None:
        """Load the model, optimiser, RNG streams and progress ``s`` of the run saved in ``self.out``;
        refuse the state of a different run."""
        import numpy as np

        from .budget import _duration

        info, rng = load_state(self.out, self.model, self.opt, ema=self.ema_model)
        if info.get("fingerprint") != json.loads(json.dumps(fingerprint)):
            raise DatasetError(f"{self.out} holds the state of a different run (dataset, split, model or settings "
                               "differ); resume with the same options or start again without --resume.")
        s.update(info["progress"])
        self._far_ready = s["best_epoch"] > 0  # far negatives are recomputed from here on (not saved)
        if budget is None:
            s["planned"] = self.cfg.epochs  # resuming with more (or fewer) epochs is allowed
            s["refit_epochs"] = self.refit_epochs(self.cfg.epochs)
        if main and "numpy" in info:
            self.rng.bit_generator.state = info["numpy"]
            self.gen.set_state(rng["augment"])
            torch.set_rng_state(rng["torch"])
        else:  # other ranks: a fresh stream per (rank, epoch)
            self.rng = self.sampler.rng = np.random.default_rng([self.cfg.seed, self.dist.rank, s["epoch"]])
        if info.get("scaler"):
            self.scaler.load_state_dict(info["scaler"])
        self.notes.append(f"resumed from {self.out} after epoch {s['epoch']} ({_duration(s['elapsed'])} spent)")
        if budget is not None and s.get("planned") is not None and s["epoch"] >= s["planned"]:
            # (a minutes run keeps the epochs it planned: a budget that ran out is not an interruption)
            self.notes.append(f"that run had already ended ({s['epoch']} of {s['planned']} planned epoch"
                              f"{'' if s['planned'] == 1 else 's'}, its {_duration(budget)} budget spent): --resume only "
                              "finishes an interrupted run, so nothing more was trained; to train longer, fine-tune its "
                              f"model again: attnseg finetune DATASET --model {self.out / 'best.safetensors'} --out "
                              "NEW_FOLDER --minutes M")

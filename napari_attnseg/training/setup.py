"""How a run is set up: the dataset read and checked, the model built (a new head when the classes
differ), normalisation chosen, the training parts, sampler, optimiser and held-out parts prepared.
:class:`RunSetup` is a mixin of :class:`~.trainer.Trainer`."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from ..data.dataset import read_dataset
from ..data.manifest import refuse_while_exporting
from ..errors import DatasetError, InputError
from ..models.registry import create_model
from .brainprep import BrainInputs
from .class_checks import label_table_hint
from .colour import ColourCases
from .config import fine_tune_defaults
from .far import FAR_WEIGHT
from .orientation import start_orientation, turn_cases
from .repeats import merge_repeated_images
from .resampling import ModelGrid
from .sampling import PatchSampler
from .split_movies import CaseIds, case_axes
from .steps import _LossNet, _with_new_head, kept_classes, looks_like_hu, training_precision
from .valblocks import EvalParts, validated_parts

REFRESH_ROWS = 8  # labelled slices per part re-segmented after each epoch for the hard negatives (2D over a volume)
# a 2D part over 2 blocks of FP_BLOCK x FP_BLOCK px is searched for false positives REFRESH_ROWS blocks at a time
# (round robin, at setup too): the whole of a 4800 x 6000 part took 65 s of a 1-minute budget before epoch 1
FP_BLOCK = 1024
CARD_MARGIN = 0.02  # validation Dice by which the card's normalisation must beat the CT window to be kept


class RunSetup(BrainInputs, ModelGrid):
    """Data, model and optimiser of a :class:`~.trainer.Trainer` (see the module docstring)."""

    def _load_data(self) -> None:
        ds = read_dataset(self.cfg.dataset)
        refuse_while_exporting(ds.root)  # (the CLI's run too: the napari tab refuses before it starts)
        self.dataset = ds
        self.ignore = ds.ignore_label
        # fine-tuning: each case turned to the start model's orientation, as inference turns it (.orientation)
        self._case_codes = [c.orientation() for c in ds.cases]
        target = start_orientation(self.cfg.start_model)
        colours = ColourCases(self.cfg.start_model)  # RGB pictures read as predict reads them (.colour)
        loaded, self._turns, turned = turn_cases([c.case_id for c in ds.cases], self._case_codes,
                                                 (colours.load(c) for c in ds.cases), target)
        self.notes.extend(colours.notes)
        self._case_codes = [target if t is not None else c for c, t in zip(self._case_codes, self._turns)]
        self.notes.extend(turned)
        self.case_ids, self.raw, merged = merge_repeated_images([c.case_id for c in ds.cases], loaded, self.ignore)
        self.case_ids = CaseIds(self.case_ids, {c.case_id: c.source_name for c in ds.cases},  # (a movie's frames,
                                case_axes(ds.cases))  # and a time-lapse kept as one case: split by frame blocks)
        turns = dict(zip([c.case_id for c in ds.cases], self._turns))
        self._turns = [turns.get(cid) for cid in self.case_ids]  # per merged case, as Part.case counts them
        self.notes.extend(merged)
        self._to_model_spacing()  # and to the start model's spacing, as inference resamples them (.resampling)
        self.loss_ignore = self.ignore if self.ignore is not None else -1  # -1 also marks patch padding
        self.n_classes = len(ds.label_names)
        if self.n_classes < 2:
            raise DatasetError(f"{ds.root}: the label table {ds.label_names} needs a background and at least one class.")
        ndims = {lab.ndim for _, lab, _ in self.raw}
        channels = {img.shape[0] for img, _, _ in self.raw}
        if len(ndims) > 1 or len(channels) > 1:
            raise DatasetError(f"{ds.root}: cases mix 2D and 3D images or channel counts; a dataset holds one kind.")
        any_fg = False
        for cid, (_img, lab, _) in zip(self.case_ids, self.raw):
            labelled = lab != self.ignore if self.ignore is not None else np.ones(lab.shape, bool)
            if not labelled.any():
                raise DatasetError(f"Case {cid} of {ds.root} has no labelled voxels (everything is 'ignore'); "
                                   "review at least one slice or leave the case out.")
            top = int(lab[labelled].max())
            if lab.min() < 0 or top >= self.n_classes:
                raise DatasetError(f"Case {cid} of {ds.root}: label value {top if top >= self.n_classes else lab.min()} "
                                   f"is not in the label table {ds.label_names}."
                                   + (" Many distinct values look like instance ids (one per object): put such masks "
                                      "in a masks/ folder (read as foreground), or export with --foreground (napari: 'One class (labels > 0)')."
                                      if top >= max(self.n_classes, 1) + 8 and len(np.unique(lab)) > 8
                                      else label_table_hint(ds.root, ds.format, top) if top >= self.n_classes else ""))
            any_fg |= bool((labelled & (lab > 0)).any())
        if not any_fg:
            raise DatasetError(f"No case of {ds.root} has any foreground voxel; there is nothing to learn. Review and "
                               "correct at least one slice that shows the object, mark it reviewed and export again.")
        self.ndim = ndims.pop()
        self.spacing = list(self.raw[0][2]) if self.raw[0][2] else None
        if self.spacing and self._model_spacing:  # the card keeps the start's spacing (cases within tolerance too)
            self.spacing[-len(self._model_spacing):] = self._model_spacing

    # -- model -------------------------------------------------------------------------------
    def _build_model(self) -> None:
        cfg = self.cfg
        self.head_reset, self.new_classes = False, []
        self._card_norm = None
        torch.manual_seed(cfg.seed)
        in_ch = self.raw[0][0].shape[0]
        if cfg.start_model:
            from ..checkpoint import load_model
            from .channel_advice import channel_mismatch

            self.model = load_model(cfg.start_model, device="cpu").train()
            card = self.model.card
            self.norm_spec = cfg.normalization or card.normalization
            self.head_reset = self.model.out_channels != self.n_classes
            if self.head_reset:
                old_shapes = {k: v.shape for k, v in self.model.state_dict().items()}
                names = list(self.dataset.label_names)
                self.model = _with_new_head(self.model, self.n_classes, names)
                self._new_head_names = [k for k, v in self.model.state_dict().items() if old_shapes.get(k) != v.shape]
                kept = [names[j] for j in sorted(kept_classes(list(card.classes), names)) if j < len(names)]
                self.new_classes = [n for n in names[1:] if n not in kept]  # (their rows start from random weights)
                self.notes.append(f"the start model predicts {len(card.classes)} classes ({', '.join(card.classes)}), the "
                                  f"dataset has {self.n_classes} ({', '.join(names)}): encoder and decoder kept, the "
                                  + (f"output head's rows of {', '.join(kept)} kept and the others initialised anew"
                                     if kept else "output head re-initialised (no class in common)"))
            if self.model.in_channels != in_ch:
                raise DatasetError(channel_mismatch(in_ch, self.model.in_channels, str(cfg.start_model)))
            self.base_card = card
        else:
            dims = cfg.spatial_dims or (3 if self.ndim == 3 and cfg.arch in ("unet", "attention_unet") else 2)
            try:
                self.model = create_model(cfg.arch, spatial_dims=dims, in_channels=in_ch, out_channels=self.n_classes,
                                          **cfg.model_config)
            except InputError:  # the registry's own message says what to change (architecture, dims, --config)
                raise
            except (KeyError, ValueError, TypeError) as exc:
                raise InputError(f"Cannot build {cfg.arch!r} with {cfg.model_config}: {exc}") from None
            self.norm_spec = cfg.normalization or {"scheme": "percentile", "lower": 1.0, "upper": 99.0}
            self.base_card = None
        if self.model.spatial_dims > self.ndim:
            raise DatasetError(f"A 3D model cannot train on the 2D images of {self.dataset.root}: start from a 2D model "
                               "(e.g. nuclei-2d; `attnseg models` lists them).")
        if cfg.prompts:  # issue 18: promptable model, simulated clicks per batch, click-based validation
            from ..prompts.training import PromptTraining

            self.prompter = PromptTraining(self)
        if (cfg.normalization is None and cfg.ct_window is not None and self.norm_spec.get("scheme") != "ct"
                and in_ch == 1 and all(looks_like_hu(img) for img, _, _ in self.raw)):
            if cfg.start_model:  # kept only if the start model does at least as well with it (see _prepare)
                self._card_norm = dict(self.norm_spec)
            self.norm_spec = {"scheme": "ct", "window": [float(v) for v in cfg.ct_window]}
            self.notes.append(f"the images are CT in Hounsfield units: normalised with the window "
                              f"[{cfg.ct_window[0]:g}, {cfg.ct_window[1]:g}] HU (clipped) instead of the "
                              + ("start model's scheme" if cfg.start_model else "percentiles"))

    def _prepare(self) -> None:
        cfg, dims = self.cfg, self.model.spatial_dims
        # as inference prepares them: skull and scalp stripped when the start model's card asks (.brainprep)
        images = self._normalised_inputs(self.norm_spec)
        labels = [lab for _, lab, _ in self.raw]

        def arrays(parts):
            return [(images[p.case][(slice(None), *p.slices)], labels[p.case][p.slices]) for p in parts]

        self.train_parts = arrays(self.split.train)
        self._images, self._labels = images, labels
        patch = list(cfg.patch or ([128, 128] if dims == 2 else [64, 64, 64]))
        if len(patch) != dims and not (dims == 2 and len(patch) == 3 and patch[0] == 1):
            raise InputError(f"--patch needs {dims} sizes for a {dims}D model; got {patch}.")
        patch = patch[-dims:]
        # never larger than the biggest training part (the model pads to its divisor itself)
        extent = np.max([lab.shape[-dims:] for _, lab in self.train_parts], axis=0)
        patch = [int(min(p, e)) for p, e in zip(patch, extent)]
        self.tile = patch
        self.patch = [1, *patch] if (dims == 2 and self.ndim == 3) else patch
        self.mode = "slices" if (dims == 2 and self.ndim == 3) else None
        self.val_parts, self.test_parts = self._val_eval_parts(), self._eval_parts(self.split.test)
        self.model.to(self.device)
        if self._card_norm is not None:
            self._choose_ct_or_card(arrays)
        if cfg.freeze_encoder:
            if not self.model.encoder_prefixes:
                raise InputError(f"{self.model.arch} does not name its encoder; fine-tune without --freeze-encoder.")
            for name, p in self.model.named_parameters():
                if name.startswith(self.model.encoder_prefixes):
                    p.requires_grad_(False)
        self.settings = fine_tune_defaults(cfg)
        self.base_lr = self.settings["lr"]
        self.start_weights = None
        if self.settings["l2sp"] > 0 and cfg.start_model:
            # L2-SP: the start values of every weight that came from the start model (not a new head)
            fresh = set(self._new_head_names) if self.head_reset else set()
            self.start_weights = {n: p.detach().clone() for n, p in self.model.named_parameters()
                                  if p.requires_grad and n not in fresh}
        if self.settings["freeze_bn"] and cfg.start_model:
            bns = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                   and m.running_var is not None]
            if bns and any(not torch.all(m.running_var == 1) or not torch.all(m.running_mean == 0) for m in bns):
                self.notes.append("batch-norm statistics frozen at the start model's")
            else:  # an untrained start model (or no batch norm): nothing worth keeping
                self.settings["freeze_bn"] = False
        self.opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=self.base_lr,
                                     weight_decay=cfg.weight_decay)
        self.precision = training_precision(self.device, cfg.precision)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.net = self.dist.wrap(_LossNet(self.model, self.loss_ignore, FAR_WEIGHT if self._far_applies() else 0.0))
        # An exponential moving average of the weights (and BN statistics) is what is validated and
        # saved when cfg.ema > 0: it smooths the epoch-to-epoch swings of the validation Dice.
        self.ema_model = None
        if cfg.ema:
            self.ema_model = copy.deepcopy(self.model).eval()
            for p in self.ema_model.parameters():
                p.requires_grad_(False)
        rank_seed = cfg.seed + 1000 * self.dist.rank
        self.rng = np.random.default_rng(rank_seed)
        self.gen = torch.Generator().manual_seed(rank_seed)
        hard = None
        if self.settings["hard_negatives"] > 0 and cfg.start_model:
            hard = self._hard_negatives()
        self.sampler = PatchSampler([x for x, _ in self.train_parts], [y for _, y in self.train_parts], self.patch,
                                    self.rng, fg_fraction=cfg.fg_fraction, ignore_index=self.loss_ignore,
                                    hard=hard, hard_fraction=self.settings["hard_negatives"])
        self._init_far()

    def _hard_negatives(self) -> list[np.ndarray]:
        """Per training part, the labelled background voxels the start model calls foreground (its false
        positives, e.g. the ones a person erased), on labelled slices only."""
        out = self._false_positives()
        self._start_hard = out
        self.notes.append(f"{sum(len(h) for h in out)} voxels of labelled background the start model called "
                          f"foreground are oversampled as hard negatives ({self.settings['hard_negatives']:.0%} of "
                          "patches, with the model's own false positives there after every epoch)")
        return out

    def _refresh_hard_negatives(self) -> None:
        """After an epoch: the hard negatives become the start model's false positives plus the current
        model's (new mistakes on the reviewed background are what the next epoch should see most). A 2D
        model over a volume re-segments at most ``REFRESH_ROWS`` labelled slices per part (round robin; the
        others keep their last false positives): on a fully labelled 48 x 512 x 512 CT the refresh of all 38
        training slices took 13 s of every 45 s epoch."""
        parts = len(self.train_parts)
        if len(getattr(self, "_fp_rows", ())) != parts:  # new parts (the refit adds the validation slices)
            self._fp_rows, self._fp_turn = [{} for _ in range(parts)], [0] * parts
        now = self._false_positives(self._next_rows) if self.mode == "slices" else self._false_positives(refresh=True)
        self.sampler.set_hard([np.concatenate([a, b]) for a, b in zip(self._start_hard, now)])

    def _next_rows(self, k: int, rows: np.ndarray) -> np.ndarray:
        """This epoch's slices of part ``k`` to re-segment (all when few), the rest kept from earlier epochs."""
        if len(rows) > REFRESH_ROWS:
            start, self._fp_turn[k] = self._fp_turn[k] % len(rows), self._fp_turn[k] + REFRESH_ROWS
            rows = np.roll(rows, -start)[:REFRESH_ROWS]
        return rows

    def _next_blocks(self, part: tuple, n: int) -> list[int]:
        """The next ``REFRESH_ROWS`` of a part's ``n`` blocks (round robin over the calls, setup included);
        ``part``: (index, shape), so a part the refit replaces starts afresh."""
        turn = self.__dict__.setdefault("_block_turn", {}).get(part, 0)
        self._block_turn[part] = turn + REFRESH_ROWS
        return sorted({(turn + i) % n for i in range(min(REFRESH_ROWS, n))})

    def _false_positives(self, rows_of=None, refresh: bool = False) -> list[np.ndarray]:
        """Per training part, the coordinates of labelled background the current model calls foreground
        (``rows_of(part, labelled slices)``: the slices to re-segment, the others' from ``_fp_rows``; a big 2D
        part: a few blocks, with ``refresh`` the others' from the earlier refreshes)."""
        from ..inference import predict

        was_training = self.model.training
        self.model.eval()
        out = []
        for k, (img, lab) in enumerate(self.train_parts):
            labelled = lab != self.loss_ignore
            if self.mode == "slices":
                rows = np.flatnonzero(labelled.reshape(lab.shape[0], -1).any(1))
                known = self._fp_rows[k] if rows_of is not None else {}
                for z in (rows if rows_of is None else rows_of(k, rows)):
                    pred = predict(self.model, img[:, z] if img.shape[0] > 1 else img[0, z], device=self.device,
                                   normalization={"scheme": "none"}, brain_extraction=False,
                                   return_probabilities=False, tile=self.tile)
                    fp = np.argwhere((np.asarray(pred.labels) > 0) & (lab[z] == 0))
                    known[int(z)] = np.concatenate([np.full((len(fp), 1), z), fp], 1)
                found = np.concatenate(list(known.values())) if known else np.zeros((0, lab.ndim), int)
            elif lab.ndim == 2 and lab.size > 2 * FP_BLOCK ** 2:  # a big 2D part: a few blocks per call
                blocks = _blocks(lab.shape)
                todo = self._next_blocks((k, lab.shape), len(blocks))
                known = self.__dict__.setdefault("_fp_blocks", {}).setdefault((k, lab.shape), {}) if refresh else {}
                for b in todo:
                    ys, xs = blocks[b]
                    pred = predict(self.model, img[:, ys, xs] if img.shape[0] > 1 else img[0, ys, xs], mode="2d",
                                   device=self.device, normalization={"scheme": "none"}, brain_extraction=False,
                                   return_probabilities=False, tile=self.tile)
                    known[b] = np.argwhere((np.asarray(pred.labels) > 0) & (lab[ys, xs] == 0)) + [ys.start, xs.start]
                found = np.concatenate(list(known.values())) if known else np.zeros((0, 2), int)
            elif lab.ndim == 3 and self.mode != "slices" and min(lab.shape) < 2:
                # a one-slice validation slab the refit trains on: a 3D model cannot run on it alone (it still gives
                # training patches; no hard negatives searched there)
                found = np.zeros((0, lab.ndim), int)
            else:
                pred = predict(self.model, img if img.shape[0] > 1 else img[0], mode=self.mode, device=self.device,
                               normalization={"scheme": "none"}, brain_extraction=False,
                               return_probabilities=False, tile=self.tile)
                found = np.argwhere((np.asarray(pred.labels) > 0) & (lab == 0))
            out.append(found)
        self.model.train(was_training)
        return out

    def _choose_ct_or_card(self, arrays) -> None:
        """Fine-tuning on CT: the start model's validation Dice with the CT window and with its card's
        normalisation; the card's scheme is kept only when it scores ``CARD_MARGIN`` higher (a model trained
        on CT with its card's scheme keeps it)."""
        ct_per_class = self.evaluate(self.val_parts) if self.dist.is_main else []
        ct = self._score(ct_per_class) if self.dist.is_main else 0.0
        images = self._normalised_inputs(self._card_norm)
        saved = (self._images, self.val_parts)
        self._images = images
        self.val_parts = self._val_eval_parts()
        card_per_class = self.evaluate(self.val_parts) if self.dist.is_main else []
        card = self._score(card_per_class) if self.dist.is_main else 0.0
        # the card's own scheme only when it is clearly better: a start model that finds nothing either way
        # (0.003 vs 0.003) learns the new task on the CT window
        use_card = self.dist.broadcast([float(card > ct + CARD_MARGIN)])[0] > 0.5
        if use_card:
            self.norm_spec = self._card_norm
            self.train_parts = [(images[p.case][(slice(None), *p.slices)], self._labels[p.case][p.slices])
                                for p in self.split.train]
            self.test_parts = self._eval_parts(self.split.test)
            self.notes[:] = [n for n in self.notes if "Hounsfield" not in n]
            self.notes.append(f"CT in Hounsfield units: the start model's validation Dice is higher with its own "
                              f"normalisation ({card:.4f}) than with the CT window ({ct:.4f}); its own is kept")
            self._keep_start_eval(card_per_class)
        else:
            self._images, self.val_parts = saved
            self._keep_start_eval(ct_per_class)
            # (higher, though not by the margin: the start model as it is, should no epoch beat that)
            self._card_start = (card, card_per_class) if card > ct else None
            if self.notes and "Hounsfield" in " ".join(self.notes):
                self.notes.append(f"start model's validation Dice: CT window {ct:.4f}, its own normalisation {card:.4f}")

    def _start_with_card_norm(self, s: dict) -> bool:
        """When the start model scored higher with its own normalisation than with the CT window (chosen, the card's
        not being higher by ``CARD_MARGIN``) and no epoch beat that score, the start model as it is, with its own
        normalisation, is the result: never a model worse than the start on the validation."""
        found = getattr(self, "_card_start", None)
        if not found or s["best"] >= found[0]:
            return False
        card, per_class = found
        self.norm_spec = self._card_norm
        if self.test_parts:
            self._images = self._normalised_inputs(self._card_norm)
            self.test_parts = self._eval_parts(self.split.test)
            s["test_before"] = None
        s.update(before=card, best=card, best_per_class=per_class, best_epoch=0)
        self.notes[:] = [n for n in self.notes if "Hounsfield" not in n and not n.startswith(("after choosing", "the refit"))]
        self.notes.append(f"the start model scores higher with its own normalisation ({card:.4f}) than with the CT "
                          "window, and no epoch beat that: it is kept as it is, with its own normalisation")
        return True

    def _keep_start_eval(self, per_class: list[float]) -> None:
        """The start model's validation, measured while choosing the normalisation: the run's "before" (saves a
        validation of setup time), as long as the weights and validation parts stay the same."""
        if self.dist.is_main:
            self._start_eval = (per_class, self.val_parts, self._weights_version())

    def _start_eval_cached(self) -> list[float] | None:
        found, self._start_eval = getattr(self, "_start_eval", None), None
        if found is None or self.ema_model is not None:
            return None
        per_class, parts, version = found
        return per_class if parts is self.val_parts and version == self._weights_version() else None

    def _weights_version(self) -> tuple[int, ...]:
        """Changes whenever a weight or buffer of the model is written in place (torch's version counters)."""
        return tuple(t._version for t in (*self.model.parameters(), *self.model.buffers()))

    # -- evaluation --------------------------------------------------------------------------
    def _val_eval_parts(self) -> EvalParts:
        """The validation parts ready to segment; a big 2D part as a fixed set of its blocks (.valblocks)."""
        if self.cfg.prompts:  # click-based validation: whole parts, as before
            return self._eval_parts(self.split.val)
        parts, said = validated_parts(self.split.val, self._labels, self.ignore)
        if said and said not in self.split.validation:  # the summary and the card say so
            self.split.validation = f"{self.split.validation}; {said}" if self.split.validation else said
        return self._eval_parts(parts)

    def _eval_parts(self, parts) -> EvalParts:
        """(image with context, labels of the part, where the part lies in that image) per part.

        A validation or test part is segmented as a user would segment it: inside the whole image, so
        the model sees the image around it (half a tile each side) as it does at inference. Only the
        part's labels are scored; the training patches never read the image of a held-out part."""
        out = []
        dims = len(self.tile)
        for p in parts:
            img, lab = self._images[p.case], self._labels[p.case]
            margin = [0] * (lab.ndim - dims) + [t // 2 for t in self.tile]
            outer, inner = [], []
            for sl, m, n in zip(p.slices, margin, lab.shape):
                start, stop, _ = sl.indices(n)
                lo, hi = max(start - m, 0), min(stop + m, n)
                outer.append(slice(lo, hi))
                inner.append(slice(start - lo, stop - lo))
            out.append((img[(slice(None), *outer)], lab[p.slices], tuple(inner)))
            self._remember_part_mask(p.case, out[-1][0], outer)  # inference: labels outside the brain are background
        return EvalParts(out, [p.case for p in parts])


def _blocks(shape: tuple[int, ...]) -> list[tuple[slice, slice]]:
    """A big 2D part cut into blocks of at most about ``FP_BLOCK`` px a side (equal sizes: no thin last block)."""
    edges = [np.linspace(0, n, -(-n // FP_BLOCK) + 1).round().astype(int) for n in shape]
    return [(slice(y0, y1), slice(x0, x1)) for y0, y1 in zip(edges[0][:-1], edges[0][1:])
            for x0, x1 in zip(edges[1][:-1], edges[1][1:])]

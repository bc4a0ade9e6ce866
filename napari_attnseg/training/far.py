"""Far negatives: what the model calls foreground on slices nobody reviewed, away from anything reviewed.

Why: a clinician reviews a few slices of a volume (the tumour slices they corrected, a couple of
tumour-free ones). Fine-tuning on those alone leaves false positives on the slices nobody touched:
measured on ``radiomics/lung1`` (nuclei-2d start, 4 quiet minutes) one or two blobs of 100-600 voxels on
a third of the untouched slices, 1,200 voxels in all, against 350 voxels of tumour on the untouched
slice 33. They keep the Dice on the untouched slices low however well the tumour is found.

What: once an epoch has beaten the start model on the validation (before that the model's foreground is
not blobs but noise: on lung1 the first epochs call half the body tumour), after each epoch the model segments a few unreviewed slices (round robin, ``ROWS_PER_EPOCH`` per
epoch in a 2D-over-a-volume run; the whole training part every ``EPOCHS_3D`` epochs for a 3D model).
The predicted foreground is split into connected components (in 3D, across slices) together with
the reviewed foreground; a component that touches no reviewed foreground, and is no larger than
``MAX_SIZE`` times the largest reviewed object, is a *far negative*: its
voxels on unreviewed slices are trained towards background with a weight of ``FAR_WEIGHT`` (the
sentinel label :data:`~.losses.WEAK`), and a share of the patches (``TrainConfig.far_negatives``) is
centred on them. The model's foreground that continues a reviewed object through the slices between
(the tumour on an untouched slice next to a corrected one) is connected to it and left alone.

The assumption, said in the run's notes: what the model finds on an unreviewed slice and that does not
connect to anything the clinician marked is more likely a false positive than a second object. A
second lesion nobody reviewed is pushed towards background too (with a low weight); review one slice
of it, and it is connected again.

:class:`FarNegatives` is a mixin of :class:`~.trainer.Trainer`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

ROWS_PER_EPOCH = 8  # unreviewed slices segmented after each epoch (2D model over a volume)
EPOCHS_3D = 3  # a 3D model segments its whole training part every this many epochs
FAR_WEIGHT = 0.5  # weight of a far-negative voxel in the loss (a reviewed voxel weighs 1)
MIN_FG_ROWS = 2  # reviewed slices with foreground among the training slices, at least (see the module docstring)
MAX_SIZE = 10  # components larger than this many times the largest reviewed object are not blobs but an untrained model


def far_components(pred: np.ndarray, lab: np.ndarray, ignore: int, max_voxels: int | None = None) -> np.ndarray:
    """The voxels of ``pred`` (bool) on unlabelled positions (``lab == ignore``) whose connected component
    of ``pred | reviewed foreground`` holds no reviewed foreground voxel (and, with ``max_voxels``, is no
    larger than that)."""
    reviewed_fg = (lab > 0) & (lab != ignore)
    comp, n = ndi.label(pred | reviewed_fg)
    if n == 0:
        return np.zeros(lab.shape, bool)
    near = np.unique(comp[reviewed_fg])
    far_ids = np.setdiff1d(np.arange(1, n + 1), near)
    if max_voxels is not None and len(far_ids):
        sizes = np.bincount(comp.ravel(), minlength=n + 1)
        far_ids = far_ids[sizes[far_ids] <= max_voxels]
    return np.isin(comp, far_ids) & pred & (lab == ignore)


def largest_object(labels: list[np.ndarray], ignore: int) -> int:
    """Voxels of the largest connected reviewed-foreground object over the parts."""
    best = 0
    for lab in labels:
        comp, n = ndi.label((lab > 0) & (lab != ignore))
        if n:
            best = max(best, int(np.bincount(comp.ravel())[1:].max()))
    return best


class FarNegatives:
    """Far-negative bookkeeping of a run (see the module docstring). Works per case: a one-case split cuts
    the volume into training slabs at the validation slices, and an object goes on through them, so
    connectivity is taken over the whole case (the model's own prediction on the validation slices, never
    their labels, until the refit trains on them)."""

    def _far_applies(self) -> bool:
        return self.settings.get("far_negatives", 0) > 0 and not self.cfg.prompts and self.loss_ignore >= 0

    def _init_far(self) -> None:
        self._far_on = self._far_applies()
        self._far_cursor, self._far_epochs = 0, 0
        self._far_ready = False  # set by the run once an epoch beat the start model (see Trainer.fit)
        self._far_at_refit = False  # too few foreground slices to train on: tried again when the refit adds the validation ones
        if self._far_on:
            self._far_setup(list(self.split.train))

    def _far_setup(self, parts: list) -> None:
        """Index ``parts`` for far negatives, or switch them off (nothing unreviewed, too few foreground slices)."""
        self._far_parts = parts
        self._far_known, self._far_pred, self._far_rows = {}, {}, {}
        for c in sorted({p.case for p in self._far_parts}):
            self._far_pred[c] = np.zeros(self._labels[c].shape, bool)
        self._far_index()
        fg_rows = sum(int(((k > 0) & (k != self.loss_ignore)).reshape(k.shape[0], -1).any(1).sum())
                      for k in self._far_known.values())
        if not any(len(r) for r in self._far_rows.values()):
            self._far_on = False
        elif fg_rows < MIN_FG_ROWS:
            self._far_on = False
            self._far_at_refit = True
            self.notes.append(f"far negatives off: {fg_rows} reviewed slice(s) with foreground to train on, they need "
                              f"{MIN_FG_ROWS} (with fewer the model unlearns the object itself)"
                              + ("; they start at the refit if the validation slices add some"
                                 if self.split.val and self._refit_applies() else ""))  # (--refit 0: no refit)
        else:
            self._far_on = True
            self.notes.append(
                f"far negatives: the model's foreground on unreviewed slices that connects to no reviewed foreground "
                f"is trained towards background (weight {FAR_WEIGHT}, {self.settings['far_negatives']:.0%} of "
                "patches); a second object nobody reviewed is pushed down too, review a slice of it to keep it")

    def _far_index(self) -> None:
        """Per case: the labels trained on (the rest 'ignore'), and the rows the model segments for the far
        negatives (unreviewed rows of the training parts, and the held-out rows, for connectivity only)."""
        ignore = self.loss_ignore
        for c in self._far_pred:
            lab = self._labels[c]
            known = np.full(lab.shape, ignore, lab.dtype)
            for p in self._far_parts:
                if p.case == c:
                    known[p.slices] = lab[p.slices]
            self._far_known[c] = known
            unknown = (known == ignore).reshape(lab.shape[0], -1).all(1)
            self._far_rows[c] = np.flatnonzero(unknown)
        self._far_max = MAX_SIZE * max(1, largest_object(list(self._far_known.values()), ignore))

    def _far_parts_grew(self) -> None:
        """The refit trains on the validation parts too: their labels now count, nothing to segment there. A run
        whose training slices held one foreground slice may now hold two or more (lung1: tumour slices 32 and 34
        reviewed, 34 validating): far negatives start here, every unreviewed slice segmented once first."""
        parts = list(self.split.train) + list(self.split.val)
        if self._far_on:
            self._far_parts = parts
            self._far_index()
        elif self._far_at_refit and self._far_ready:
            self._far_at_refit = False
            self._far_setup(parts)
            if self._far_on:
                self.notes[-1] += " (from the refit on, when the validation slices joined the training ones)"
                self._refresh_far(all_rows=True)

    def _refresh_far(self, all_rows: bool = False) -> None:
        """After an epoch: segment the next rows (``all_rows``: every one), recompute the far negatives, hand them
        to the sampler."""
        if not self._far_on or not self._far_ready:
            return
        from ..inference import predict

        self._far_epochs += 1
        was_training = self.model.training
        self.model.eval()
        try:
            for c, rows in self._far_rows.items():
                img = self._images[c]
                if not len(rows):
                    continue
                if self.mode == "slices":
                    n = len(rows) if all_rows else min(ROWS_PER_EPOCH, len(rows))
                    take = [rows[(self._far_cursor + j) % len(rows)] for j in range(n)]
                    for z in take:
                        x = img[:, z] if img.shape[0] > 1 else img[0, z]
                        pred = predict(self.model, x, device=self.device, normalization={"scheme": "none"},
                                       brain_extraction=False, return_probabilities=False, tile=self.tile)
                        self._far_pred[c][z] = np.asarray(pred.labels) > 0
                elif all_rows or self._far_epochs % EPOCHS_3D == 1 or EPOCHS_3D == 1:
                    pred = predict(self.model, img if img.shape[0] > 1 else img[0], mode=self.mode, device=self.device,
                                   normalization={"scheme": "none"}, brain_extraction=False,
                                   return_probabilities=False, tile=self.tile)
                    self._far_pred[c] = np.asarray(pred.labels) > 0
        finally:
            self.model.train(was_training)
        self._far_cursor += ROWS_PER_EPOCH
        self.set_far_masks()

    def set_far_masks(self) -> None:
        """The far negatives of every case, cut into the training parts, handed to the sampler."""
        if not self._far_on:
            return
        far = {c: far_components(self._far_pred[c], self._far_known[c], self.loss_ignore, self._far_max)
               for c in self._far_pred}
        self.sampler.set_weak([far[p.case][p.slices] for p in self._far_parts], self.settings["far_negatives"])

"""The correction loop, measured: rounds of (choose k slices -> the reference stands in for the
clinician's correction on them -> fine-tune m minutes with the defaults), Dice on the slices nobody
touched after each round, for three ways of choosing the slices: the suggester (``suggest``),
``random`` (seeded) and ``order`` (the next unreviewed slices from the top).

    OMP_NUM_THREADS=1 python benchmarks/bench_loop.py --case lung1 --start nuclei-2d \\
        --first 32,34 --rounds 2 -k 2 --minutes 4 --strategy suggest random order

``--first``: the slices corrected before the first suggestion (the clinician's own picks, e.g. the
tumour slices they saw). Round 1 reviews ``--first`` plus k chosen slices; every later round adds k.
Each round fine-tunes the previous round's model (round 1: ``--start``) on all slices reviewed so
far (the rest 'ignore'), with nothing but ``--minutes`` given, as `attnseg finetune` would.
Metrics on the untouched slices: Dice pooled over them (1 when neither the reference nor the model
has foreground there), false-positive voxels, Dice on the untouched slices that hold reference
foreground. No post-processing helper is applied.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np


def _dice(pred: np.ndarray, ref: np.ndarray) -> float:
    p, r = pred > 0, ref > 0
    d = int(p.sum()) + int(r.sum())
    return 1.0 if d == 0 else 2.0 * int((p & r).sum()) / d


def _measure(pred, ref, reviewed) -> dict:
    untouched = np.ones(ref.shape[0], bool)
    untouched[list(reviewed)] = False
    fg_rows = untouched & (ref > 0).reshape(ref.shape[0], -1).any(1)
    return {"dice_untouched": round(_dice(pred[untouched], ref[untouched]), 4),
            "fp_voxels_untouched": int(((pred > 0) & (ref == 0) & untouched[:, None, None]).sum()),
            "dice_untouched_fg_slices": round(_dice(pred[fg_rows], ref[fg_rows]), 4) if fg_rows.any() else None,
            "untouched_fg_slices": np.flatnonzero(fg_rows).tolist()}


def run_loop(image, ref, spacing, start: str, first: list[int], rounds: int, k: int, minutes: float, strategy: str,
             work: Path, seed: int = 0, label_names=("background", "tumour"), overrides: dict | None = None,
             epochs: int | None = None) -> list[dict]:
    from napari_attnseg import load_model
    from napari_attnseg.data.export import export_case
    from napari_attnseg.inference import predict
    from napari_attnseg.suggest import predict_uncertainty, suggest_slices
    from napari_attnseg.training import TrainConfig, train

    rng = np.random.default_rng(seed)
    model_path, reviewed, rows = start, list(first), []
    model = load_model(model_path, device="cpu")
    pred = np.asarray(predict(model, image, device="cpu", return_probabilities=False, spacing=spacing).labels)
    rows.append({"round": 0, "strategy": strategy, "reviewed": sorted(reviewed), **_measure(pred, ref, reviewed)})
    print(json.dumps(rows[-1]), flush=True)
    for r in range(1, rounds + 1):
        t0 = time.perf_counter()
        unreviewed = [i for i in range(ref.shape[0]) if i not in reviewed]
        if strategy == "suggest":
            _, unc = predict_uncertainty(model, image, device="cpu", spacing=spacing)
            picks = [i for i, _ in suggest_slices(model, image, reviewed, k, uncertainty=unc)]
        elif strategy == "random":
            picks = sorted(rng.choice(unreviewed, k, replace=False).tolist())
        else:
            picks = unreviewed[:k]
        reviewed = sorted(set(reviewed) | set(picks))
        ds = work / f"{strategy}_r{r}_ds"
        shutil.rmtree(ds, ignore_errors=True)
        export_case(image, ref.astype(np.uint8), ds, "nnunet", spacing=spacing, reviewed_slices=reviewed,
                    label_names=list(label_names))
        out = work / f"{strategy}_r{r}_model"
        shutil.rmtree(out, ignore_errors=True)
        budget = {"minutes": minutes} if not epochs else {"minutes": None, "epochs": epochs}
        res = train(TrainConfig(dataset=str(ds), out=str(out), start_model=str(model_path), **budget,
                                **(overrides or {})))
        if res.checkpoint is not None:  # None: nothing was learned, no model saved; the round keeps its start model
            model_path = res.checkpoint
            model = load_model(model_path, device="cpu")
        pred = np.asarray(predict(model, image, device="cpu", return_probabilities=False, spacing=spacing).labels)
        rows.append({"round": r, "strategy": strategy, "picked": picks, "reviewed": reviewed,
                     "val_dice_before": res.val_dice_before, "val_dice_after": res.val_dice_after,
                     "kept_start": res.kept_start, "epochs": res.epochs, "split": res.split, "notes": res.notes,
                     "seconds": round(time.perf_counter() - t0, 1), **_measure(pred, ref, reviewed)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def case_folder(data: Path, case: str) -> Path | None:
    """The folder holding ``<case>_image.nii.gz``: ``data`` itself or, when the shared data folder is given (as the
    other benchmarks' --shared), its ``radiomics/``; None when neither has it."""
    for folder in (data, data / "radiomics"):
        if (folder / f"{case}_image.nii.gz").exists():
            return folder
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "radiomics"),
                    help="the folder with <case>_image.nii.gz and <case>_labels.nii.gz (the shared data folder, "
                         "with radiomics/ inside, is taken too)")
    ap.add_argument("--case", default="lung1", help="lung1 or brain1 (<data>/<case>_image/labels.nii.gz)")
    ap.add_argument("--start", default="nuclei-2d", help="start model (not trained on the case)")
    ap.add_argument("--first", default="32,34", help="slices corrected before the first suggestion")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("-k", type=int, default=2, help="slices chosen per round")
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--epochs", type=int, default=None,
                    help="a fixed number of epochs instead of --minutes (comparisons that a busy machine cannot skew)")
    ap.add_argument("--strategy", nargs="+", default=["suggest", "random", "order"])
    ap.add_argument("--work", default="/tmp/bench_loop")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=JSON",
                    help="TrainConfig overrides for a side-by-side run, e.g. lr=1e-3 freeze_bn=false l2sp=0")
    args = ap.parse_args()
    from napari_attnseg._files import describe_machine
    from napari_attnseg.correct import parse_slice_ranges
    from napari_attnseg.data import read_image

    data = case_folder(Path(args.data), args.case)
    if data is None:
        ap.error(f"--data {args.data}: no {args.case}_image.nii.gz there (nor in radiomics/ inside); "
                 "give the folder with the radiomics cases")
    vol = read_image(data / f"{args.case}_image.nii.gz")
    ref = np.asarray(read_image(data / f"{args.case}_labels.nii.gz").data).astype(np.int64)
    image = np.asarray(vol.data)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    overrides = {k: json.loads(v) for k, v in (a.split("=", 1) for a in args.set)}
    rows = []
    for strategy in args.strategy:
        rows += run_loop(image, ref, tuple(vol.spacing), args.start, parse_slice_ranges(args.first), args.rounds,
                         args.k, args.minutes, strategy, work, overrides=overrides, epochs=args.epochs)
        for row in rows:
            row["overrides"] = overrides
            row["machine"] = describe_machine()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

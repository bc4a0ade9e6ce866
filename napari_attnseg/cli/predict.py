"""`attnseg predict`: segment images and write masks, probabilities and attention maps."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from ._predict_checks import check_against_card, overlap_share
from ._predict_inputs import _check_out_folder, _distinct_inputs  # noqa: F401 (tests import them from here)

NAME = "predict"
HELP = "Segment images (TIFF, NIfTI, MetaImage, NRRD, DICOM, PNG/JPEG/BMP) and write masks, probabilities and attention maps."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..options import DEVICES, MODES, PRECISIONS

    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files (.tif, .nii.gz, .mha, .nrrd, .png, .jpg, .bmp) or DICOM folders; a folder of images, a quoted glob or a "
                             ".csv of paths runs a resumable cohort (finished cases are skipped)")
    parser.add_argument("--model", required=True,
                        help="a bundled model, one of your models (attnseg models), a .safetensors file or "
                             "a folder train/finetune wrote")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--attention", action="store_true", help="also write one file per attention level")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--tile", type=_tile, default=None, help="tile size, e.g. 256 or 96,96,96 (default: model card)")
    parser.add_argument("--overlap", type=overlap_share, default=None, help="tile overlap in [0, 1) (default: model card)")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--mode", default=None, choices=MODES)
    parser.add_argument("--tta", action="store_true", help="average over flips (slower, smoother)")
    parser.add_argument("--diameter", type=_diameter, default=None, metavar="D|auto",
                        help="typical object diameter in pixels of the images (they are rescaled to the model "
                             "card's object_diameter and back), or 'auto' to estimate it from a first pass")
    parser.add_argument("--brain-extraction", choices=("auto", "on", "off"), default="auto",
                        help="strip skull and scalp before a brain model (auto: as the model card says; an input "
                             "already skull-stripped is left as it is)")
    parser.add_argument("--no-prob", action="store_true", help="do not write the probability map")
    parser.add_argument("--dicom-seg", action="store_true",
                        help="also write the mask as a DICOM SEG (<name>_seg.dcm, one segment per class) on each DICOM "
                             "series given, to import into the PACS, OHIF or 3D Slicer beside the images (a case "
                             "finished before without it: only the SEG is written, from the saved mask; with "
                             "--overwrite the case is computed again)")
    parser.add_argument("--channel", type=int, default=None, metavar="K",
                        help="the channel to segment of a multi-channel TIFF or an RGB image (0 first; a grey image "
                             "saved as RGB needs none, a bright-field H&E/IHC picture's hematoxylin is the default), or the "
                             "volume of a 4D NIfTI")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace outputs of an earlier run in --out (default: refuse that input and say so; "
                             "a cohort skips the cases finished with the same model and options)")
    parser.add_argument("--summary", default=None, metavar="CSV",
                        help="the cohort summary CSV, in --out unless an absolute path (default cohort_summary.csv); "
                             "given with image files, runs them as a cohort")
    parser.add_argument("--dask", nargs="?", const="auto", default=None, metavar="N|ADDRESS",
                        help="run the cases on Dask: N local workers, a scheduler address (tcp://host:8786), or "
                             "bare: one worker per GPU (two CPU workers without one)")


class TileProgress:
    """A tqdm bar of tiles on stderr, as a ``progress(done, total)`` callback; a context manager."""

    def __init__(self, label: str):
        self.label, self.bar = label, None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            tty = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()  # in a log file (a cluster job's): once a minute
            self.bar = tqdm(total=total, desc=self.label, unit="tile", file=sys.stderr, dynamic_ncols=True,
                            mininterval=0.1 if tty else 60.0)
        self.bar.update(done - self.bar.n)
        if done >= total:  # what follows the last tile (resampling back, a big volume's outputs) takes a while too
            self.bar.set_postfix_str("tiles done; finishing the outputs", refresh=True)

    def __enter__(self) -> TileProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


def _diameter(text: str):
    from ..errors import InputError
    from ..inference.diameter import check_diameter

    try:
        return check_diameter(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _tile(text: str) -> int | list[int]:
    """``--tile``: one positive size (every axis) or one per axis, ``96,96,96`` or ``96x96x96``."""
    try:
        sizes = [int(t) for t in text.replace("x", ",").split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"takes positive sizes like 256 or 96,96,96; got {text!r}")
    return sizes[0] if len(sizes) == 1 else sizes


def run(args: argparse.Namespace) -> int:
    from .._paths import expand_user_args
    from ..checkpoint import load_model
    from ..cohort.cases import read_for_model
    from ..cohort.held import orphan_message, orphaned_mask
    from ..cohort.inputs import EDITED_DIR
    from ..cohort.lock import CaseLock, lock_path
    from ..cohort.outputs import (
        is_name_too_long,
        keep_edited_mask,
        keep_edited_seg,
        kept_warning,
        name_too_long,
        too_long_message,
    )
    from ..data.mask_input import label_map_warning, refuse_our_output
    from ..data.orientation import volume_codes
    from ..errors import AttnSegError, InputError
    from ..inference import predict
    from ..inference.checks import check_time_axis
    from ..results import (
        case_name,
        existing_outputs,
        foreign_message,
        foreign_outputs,
        foreign_seg,
        partial_marker,
        record_path,
        write_prediction,
    )
    from ..results_seg import seg_refusal_note, write_seg_only

    expand_user_args(args, "inputs", "out", "summary")  # ("~/..." quoted for its spaces: not a folder named '~')
    out = Path(args.out)
    _check_out_folder(out)
    check_against_card(args)  # (once, not once per input)
    if args.dask is not None or args.summary is not None or any(map(_is_cohort, args.inputs)):
        return _run_cohort(args)
    inputs = _distinct_inputs([Path(p) for p in args.inputs], out)
    if args.dicom_seg:
        from ..data.dicom_seg_write import refuse_not_dicom

        refuse_not_dicom(inputs)
    model = load_model(args.model, device=args.device)
    request = _request_of(args)  # (recorded: a cohort, or --dicom-seg later, knows what the case was computed with)
    if args.attention and not getattr(model, "attention_strides", None):  # (it wrote no map, silently)
        print(f"note: {model.card.name or args.model} ({model.arch}) has no attention gates; --attention writes no "
              "maps for it.", file=sys.stderr)
    failed, finished, made = 0, [], not out.exists()
    for src in inputs:
        lock = CaseLock(lock_path(out, src))  # (the cohort's lock of the case: two runs at once both wrote it, unsaid)
        try:
            if too_long := name_too_long(out, src):
                raise InputError(too_long)
            out.mkdir(parents=True, exist_ok=True)
            if (holder := lock.try_acquire()) is not None:
                raise InputError(f"{holder.describe()} is computing it into {out}; run this again when that run has "
                                 "ended (its outputs are then there: --overwrite replaces them)")
            foreign = foreign_outputs(out, src) or ([theirs] if args.dicom_seg and (theirs := foreign_seg(out, src)) else [])
            orphan = orphaned_mask(out, src) if foreign else None  # (ours, its record deleted: --overwrite keeps it)
            if foreign and not (orphan and args.overwrite):
                raise InputError(orphan_message(out, src, case_name(src), *orphan) if orphan else foreign_message(out, src, foreign))
            if args.dicom_seg and not args.overwrite and (seg_only := write_seg_only(out, src, model, request)):
                record, notes = seg_only  # (finished before with this model and these options, without its SEG)
                what = (f"wrote only its DICOM SEG ({record['dicom_seg']})" if record["dicom_seg"] else
                        "no DICOM SEG to write (see the warning)")
                print(f"{src}: finished before in {out} with this model and these options: {what} from the saved "
                      f"mask {record['mask']}, not computed again")
                for w in notes:
                    print(f"{src}: warning: {w}", file=sys.stderr)
                finished.append(src)
                continue
            existing = existing_outputs(out, src)
            # the leftovers of a run stopped half-way (Ctrl+C, a kill: marker, no record) are replaced, as in a cohort
            interrupted = partial_marker(out, src).exists() and not record_path(out, src).exists()
            if existing and interrupted and not args.overwrite:
                print(f"{src}: replacing the outputs of a run stopped half-way in {out}", file=sys.stderr)
            elif existing and not args.overwrite:
                raise InputError(
                    f"{out} already holds outputs for this input ({', '.join(p.name for p in existing[:3])}"
                    f"{', ...' if len(existing) > 3 else ''}); a mask there may have been corrected by hand. "
                    "Choose another --out, or pass --overwrite to replace them (a mask changed since attnseg "
                    f"wrote it is then kept in {out / EDITED_DIR})"
                    + (seg_refusal_note(out, src, model, request) if args.dicom_seg else "") + "."
                )
            refuse_our_output(src)  # (a mask or map of an earlier run, given as the image)
            vol = read_for_model(src, args.channel, model)
            refuse_our_output(src, vol.meta)
            time_lapse = check_time_axis(str(vol.meta.get("axes") or ""), tuple(vol.data.shape), src,
                                         model.in_channels > 1, model.spatial_dims)
            if vol.meta.get("note"):  # e.g. a grey image saved as RGB, read as grey
                print(f"{src}: note: {vol.meta['note']}", file=sys.stderr)
            with TileProgress(src.name) as progress:
                pred = predict(model, vol.data, tile=args.tile,
                               overlap=args.overlap, attention=args.attention, device=args.device,
                               precision=args.precision, mode=args.mode, tta=args.tta, spacing=vol.spacing,
                               diameter=args.diameter, brain_extraction={"on": True, "off": False}.get(args.brain_extraction),
                               orientation=volume_codes(vol), progress=progress, return_probabilities=not args.no_prob)
            if vol.meta.get("warning"):  # what the reader noticed (uneven DICOM slices, ...) goes with the result
                pred.warnings.insert(0, str(vol.meta["warning"]))
            if time_lapse:  # (frames taken for slices by a 3D model)
                pred.warnings.insert(0, time_lapse)
            if mask := label_map_warning(vol.data, src):
                pred.warnings.insert(0, mask)
            fmt = "tiff" if vol.meta.get("format") == "tiff" else "nifti"  # PNG/JPEG/BMP read as TIFF
            for keep in (keep_edited_mask, keep_edited_seg):  # --overwrite never deletes a corrected mask
                if kept := keep(out, src):
                    pred.warnings.append(kept_warning(kept))
            write_prediction(out, src, vol, model, pred, request=request, fmt=fmt, dicom_seg=args.dicom_seg,
                             say=lambda line, src=src: print(f"{src}: {line}", file=sys.stderr, flush=True))
            turned = pred.params.get("reoriented")
            print(f"{src}: {pred.params['tiles']} tiles on {pred.device} ({pred.precision}), "
                  f"{pred.timings['total_s']:.1f} s{f' (turned {turned} for the model)' if turned else ''} -> {out}")
            for w in pred.warnings:
                print(f"{src}: warning: {w}", file=sys.stderr)
            finished.append(src)
        except KeyboardInterrupt:  # ("run the same command again" then refused the inputs already finished)
            print(f"attnseg predict: interrupted; {interrupted_message(src, inputs, finished, out, args)}",
                  file=sys.stderr)
            return 130
        except AttnSegError as exc:
            failed += 1
            print(f"{src}: error: {exc}", file=sys.stderr)
        except MemoryError as exc:  # numpy says which array did not fit; say what to do about it
            failed += 1
            print(f"{src}: error: {out_of_memory(src, exc, args)}", file=sys.stderr)
        except Exception as exc:  # a failure nobody anticipated fails this input only, as in a cohort
            if is_name_too_long(exc):
                failed += 1
                print(f"{src}: error: {too_long_message(out, src)}", file=sys.stderr)
                continue
            if os.environ.get("ATTNSEG_DEBUG"):
                raise
            failed += 1
            print(f"{src}: error: unexpected {type(exc).__name__}: {exc} (set ATTNSEG_DEBUG=1 for the traceback)",
                  file=sys.stderr)
        finally:
            lock.release()
    if made and out.is_dir() and not any(out.iterdir()):  # (every input refused: no empty --out left)
        out.rmdir()
    if failed:
        print(f"{failed} of {len(inputs)} inputs failed", file=sys.stderr)
    return 1 if failed else 0


def interrupted_message(src: Path, inputs: list[Path], finished: list[Path], out: Path,
                        args: argparse.Namespace) -> str:
    """What a run of image files stopped by Ctrl+C during ``src`` left, and the command that goes on: the same command
    again would refuse the inputs finished (their outputs exist), so only the others are named."""
    left = [p for p in inputs if p not in finished]
    again = " ".join(shlex.quote(a) for a in ["attnseg", "predict", *map(str, left)]
                     + _options_again(getattr(args, "_argv", sys.argv[1:])))
    done = (f"{len(finished)} of {len(inputs)} inputs finished, their outputs in {out} are kept; " if finished else "")
    return (f"{done}{src} was not finished (the next run replaces what it left). Go on with: {again}"
            if finished else f"{src} was not finished, nothing of it is kept (the next run replaces what it left); run "
            "the same command again.")


def _options_again(argv: list[str]) -> list[str]:
    """The options of the command line ``argv`` (the inputs left out), to repeat them."""
    argv = argv[argv.index("predict") + 1:] if "predict" in argv else []
    kept, value = [], False
    for word in argv:
        if value or word.startswith("-"):
            kept.append(word)
            value = word.startswith("-") and "=" not in word and word not in FLAGS
        else:
            value = False
    return kept


FLAGS = ("--attention", "--tta", "--no-prob", "--dicom-seg", "--overwrite", "-h", "--help")  # the options that take no value


def out_of_memory(src: Path, exc: MemoryError, args: argparse.Namespace) -> str:
    """The message for an input that did not fit in memory: what failed, and what to try."""
    tries = [] if args.no_prob else ["--no-prob (no probability map: the largest output)"]
    tries += ["without --attention"] if args.attention else []
    tries += ["without --tta"] if args.tta else []
    tries += ["a crop of the image, or a machine with more memory"]
    return (f"ran out of memory ({' '.join(str(exc).split()) or 'MemoryError'}). Other inputs still run; "
            f"for this one try {', '.join(tries)}.")


def _is_cohort(text: str) -> bool:
    """A folder of images (not a DICOM series), a glob or a CSV: many cases."""
    from ..data import image_format

    p = Path(text)
    if p.exists():
        return p.suffix.lower() == ".csv" or (p.is_dir() and image_format(p) != "dicom")
    return any(c in text for c in "*?[")


def _options(args: argparse.Namespace) -> dict:
    """predict's keywords as the command line gives them (a cohort's and a lone run's alike)."""
    return dict(attention=args.attention, tile=args.tile, overlap=args.overlap,
                device=args.device, precision=args.precision, mode=args.mode, tta=args.tta,
                return_probabilities=not args.no_prob, diameter=args.diameter,
                brain_extraction={"on": True, "off": False}.get(args.brain_extraction))


def _request_of(args: argparse.Namespace) -> dict:
    """The request a lone run records, as a cohort's (:func:`..cohort.run._request`: the options that are not
    predict's defaults, the channel, ``dicom_seg``): a later run knows what the case was computed with."""
    from ..cohort.run import _request

    request = _request(_options(args))
    if args.channel is not None:
        request["channel"] = int(args.channel)
    if args.dicom_seg:
        request["dicom_seg"] = True
    return request


def _run_cohort(args: argparse.Namespace) -> int:
    """Folder/glob/CSV inputs or --dask: a resumable cohort run (napari_attnseg.cohort) and its summary CSV."""
    import contextlib

    from ..cohort import SUMMARY_NAME, dask_client, predict_cohort
    from ..cohort.run import SEG_ONLY

    options = _options(args)

    def show(done: int, total: int, res) -> None:
        other = any(str(w).startswith("computed by another attnseg run") for w in res.warnings)
        seg_only = [w for w in res.warnings if SEG_ONLY in str(w)] if res.status == "done" and not res.voxels else []
        what = {"done": f"{seg_only[0].split(':')[0]}, {res.seconds:.1f} s" if seg_only else
                f"{res.seconds:.1f} s, {res.voxels_per_s / 1e6:.2f} Mvoxel/s",
                "skipped": "computed by another run" if other else "finished before",
                "failed": res.error}.get(res.status, res.error or res.status)
        print(f"[{done}/{total}] {res.case}: {res.status} ({what})", file=sys.stderr if res.failed else sys.stdout)
        for w in res.warnings:
            if w not in seg_only:
                print(f"{res.case}: warning: {w}", file=sys.stderr)

    with dask_client(args.dask) if args.dask else contextlib.nullcontext((None, None)) as (client, threads):
        summary = predict_cohort(args.model, args.inputs, args.out, client=client, overwrite=args.overwrite,
                                 summary=args.summary or SUMMARY_NAME,
                                 threads=threads, progress=show, channel=args.channel, dicom_seg=args.dicom_seg,
                                 **options)
    print(f"{summary.describe()}; summary: {summary.csv}")
    return 1 if summary.failed else 0

"""`attnseg suggest`: the slices of a volume to review next (where the model is least sure)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

NAME = "suggest"
HELP = "List the unreviewed slices of a volume the model is least sure about (review these next)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..options import DEVICES  # (not ..devices, which imports torch)

    parser.add_argument("image", help="image file (NIfTI, TIFF) or DICOM folder")
    parser.add_argument("--model", required=True,
                        help="a bundled model, one of your models (attnseg models), a .safetensors file or "
                             "a folder train/finetune wrote")
    parser.add_argument("--reviewed", metavar="a,b,c-d", help="slices already reviewed (first array axis), e.g. 3,10-12")
    parser.add_argument("-n", type=int, default=5, help="how many slices to suggest (default 5)")
    parser.add_argument("--no-flips", action="store_true",
                        help="entropy only (skip the mirrored second pass: half the time)")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--channel", type=int, default=None, metavar="K",
                        help="the channel, colour or 4D NIfTI volume to look at (as attnseg predict --channel)")
    parser.add_argument("--uncertainty", metavar="FILE",
                        help="also write the uncertainty map (.nii.gz or .tif); an existing file is refused "
                             "unless --overwrite, the input image always")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --uncertainty file")


def check_uncertainty_path(path: Path, image: Path, overwrite: bool) -> None:
    """Refuse, before any inference, an ``--uncertainty`` file that would replace the input image, an
    existing file (unless ``overwrite``), a folder, a missing or read-only folder or a format we cannot write."""
    import tempfile

    from .._files import name_max
    from ..data import image_format
    from ..errors import InputError

    if image_format(path) not in ("nifti", "tiff"):
        raise InputError(f"--uncertainty {path}: give a .nii.gz, .nii, .tif or .tiff file name.")
    if len(path.name.encode()) > (most := name_max(path.parent)):  # (was an OSError, or one after the prediction)
        raise InputError(f"--uncertainty {path}: the file name is {len(path.name.encode())} bytes long in UTF-8 (an "
                         f"accented or non-Latin letter takes 2-4), over the {most} its file system allows; choose a "
                         "shorter name.")
    target, source = path.resolve(), image.resolve()
    if target == source or (path.exists() and os.path.samefile(path, image)):
        raise InputError(f"--uncertainty {path} would replace the input image {image}; choose another file name.")
    if source in target.parents:  # a DICOM series folder: another file in it would join the series' folder
        raise InputError(f"--uncertainty {path} is inside the input's folder {image} (a DICOM series); write it "
                         "outside that folder.")
    if path.is_dir():
        raise InputError(f"--uncertainty {path} is a folder; give a file name.")
    if path.exists() and not overwrite:
        raise InputError(f"--uncertainty {path} already exists; choose another file name, or pass --overwrite "
                         "to replace it.")
    if not path.parent.is_dir():
        raise InputError(f"--uncertainty {path}: the folder {path.parent} does not exist.")
    try:  # written in once now: not an error after the whole prediction
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".attnseg-write-test-"):
            pass
    except OSError as exc:
        raise InputError(f"--uncertainty {path}: the folder {path.parent} cannot be written in "
                         f"({exc.strerror or exc}); choose a file in a folder you can write to.") from None


def one_image_message(src, meta: dict, channel: int | None) -> str:
    """Why ``src`` has no slices to rank, and what to give instead: a 2D image, the one plane ``--channel`` chose of
    planes along an unnamed axis (ranked as slices without it, as predict segments them), or a picture's grey (was:
    "is a 2D image; suggestions are slices of a volume" for each, also for a 3-plane TIFF given a --channel)."""
    axes = str(meta.get("axes") or "")
    if channel is not None and "plane" in str(meta.get("note") or ""):
        return (f"{src}: --channel {channel} took one plane of its planes along an unnamed first axis, a 2D image; "
                "suggestions rank the slices of a volume: leave --channel out to rank its planes as slices (as "
                "attnseg predict segments them without it).")
    if channel is not None:
        return (f"{src}: --channel {channel} is one 2D image (axes {axes or 'YX'}), with no slices to rank; suggestions "
                "rank the slices of a volume (a z-stack, a CT or MRI scan). Review a 2D image whole (napari's Correct "
                "panel) and export it without --reviewed-slices.")
    return (f"{src} is one 2D image (axes {axes or 'YX'}), with no slices to rank; suggestions rank the slices of a "
            "volume (a z-stack, a CT or MRI scan). Review a 2D image whole (napari's Correct panel) and export it "
            "without --reviewed-slices.")


class Passes:
    """A ``progress(done, total)`` callback over several model passes (the image, then its mirror), each reporting
    from the start (in batches: a small volume's pass reports once, ``(8, 8)``): one bar over all of them."""

    def __init__(self, progress, passes: int):
        self.progress, self.passes = progress, passes
        self.before, self.last = 0, (0, 0)

    def __call__(self, done: int, total: int) -> None:
        if self.last[1] and (self.last[0] >= self.last[1] or done < self.last[0]):  # the previous pass ended
            self.before = min(self.before + self.last[1], total * (self.passes - 1))
        self.last = (done, total)
        self.progress(self.before + done, total * self.passes)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from .._paths import expand_user_args
    from ..checkpoint import load_model
    from ..cohort.cases import read_for_model
    from ..correct import format_slice_ranges, parse_slice_ranges
    from ..data.dicom import inserted_slices
    from ..data.inserted import no_image_text
    from ..data.mask_input import label_map_warning, refuse_our_output
    from ..data.orientation import volume_codes
    from ..errors import InputError
    from ..inference.checks import check_time_axis
    from ..suggest import left_to_review, predict_uncertainty, suggest_slices
    from .predict import TileProgress

    if args.n < 1:
        raise InputError("-n must be >= 1.")
    expand_user_args(args, "image", "uncertainty")  # ("~/..." quoted for its spaces: not a folder named '~')
    unc_path = Path(args.uncertainty) if args.uncertainty else None
    if unc_path is not None:
        check_uncertainty_path(unc_path, Path(args.image), args.overwrite)
    refuse_our_output(args.image)
    model = load_model(args.model, device=args.device)
    vol = read_for_model(args.image, args.channel, model)
    refuse_our_output(args.image, vol.meta)
    if mask := label_map_warning(vol.data, args.image):
        print(f"{args.image}: warning: {mask}", file=sys.stderr)
    if time_lapse := check_time_axis(str(vol.meta.get("axes") or ""), tuple(vol.data.shape), args.image,
                                     model.in_channels > 1, model.spatial_dims):
        print(f"warning: {time_lapse}", file=sys.stderr)
    image = np.asarray(vol.data)
    if vol.meta.get("note") and not (image.ndim < 3 and args.channel is not None):  # as predict says it (planes along
        print(f"{args.image}: note: {vol.meta['note']}", file=sys.stderr)  # an unnamed first axis: ranked as slices)
    if image.ndim < 3:
        raise InputError(one_image_message(args.image, vol.meta, args.channel))
    n_slices = image.shape[-3]
    reviewed = parse_slice_ranges(args.reviewed) if args.reviewed else []
    outside = [s for s in reviewed if s >= n_slices]
    if outside:
        raise InputError(f"Reviewed slices {format_slice_ranges(outside)} are outside the volume {args.image} "
                         f"(slices 0..{n_slices - 1}); check --reviewed.")
    gone = inserted_slices(vol.meta, n_slices)  # (a series' missing images: nothing to review there, never suggested)
    nothing = (f"Every slice of {args.image} (0..{n_slices - 1}) is reviewed"
               f"{f', and {no_image_text(gone)}' if gone else ''}: nothing to suggest.")
    if not left_to_review(n_slices, reviewed, vol.meta) and unc_path is None:
        print(nothing)
        return 0
    warnings: list[str] = []
    with TileProgress(Path(args.image).name) as bar:  # (a CT ran 107 s with flips, silently)
        _, unc = predict_uncertainty(model, image, flips=not args.no_flips, device=args.device, spacing=vol.spacing,
                                     orientation=volume_codes(vol), warnings=warnings,
                                     progress=Passes(bar, 1 if args.no_flips else 2))
    for w in warnings:
        print(f"{args.image}: warning: {w}", file=sys.stderr)
    if unc_path is not None:
        from ..data.io import write_image

        write_image(unc_path, unc.astype(np.float32), like=vol)  # the image's geometry, codes and unit
    placed = vol.meta.get("format") in ("nifti", "dicom")  # slices in mm (a TIFF's spacing may be pixels or um)
    picks = suggest_slices(model, image, reviewed, args.n, uncertainty=unc, meta=vol.meta,
                           slice_mm=float(vol.spacing[0]) if placed and vol.spacing is not None else None)
    if not picks:
        print(nothing)
        return 0
    print("slice\tscore")
    for index, score in picks:
        print(f"{index}\t{score:.4f}")
    return 0

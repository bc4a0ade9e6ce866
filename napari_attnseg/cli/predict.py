"""`attnseg predict`: segment images and write masks, probabilities and attention maps."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "predict"
HELP = "Segment images (TIFF, NIfTI, DICOM) and write masks, probabilities and attention maps."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..options import DEVICES, MODES, PRECISIONS

    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files (.tif, .nii.gz) or DICOM folders")
    parser.add_argument("--model", required=True, help="bundled model name (see `attnseg models`) or a .safetensors file")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--attention", action="store_true", help="also write one file per attention level")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--tile", type=str, default=None, help="tile size, e.g. 256 or 96,96,96 (default: model card)")
    parser.add_argument("--overlap", type=float, default=None, help="tile overlap in [0, 1) (default: model card)")
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
    parser.add_argument("--overwrite", action="store_true",
                        help="replace outputs of an earlier run in --out (default: refuse that input and say so)")


class TileProgress:
    """A tqdm bar of tiles on stderr, as a ``progress(done, total)`` callback; a context manager."""

    def __init__(self, label: str):
        self.label, self.bar = label, None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.label, unit="tile", file=sys.stderr, dynamic_ncols=True)
        self.bar.update(done - self.bar.n)

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


def _parse_tile(text: str | None) -> list[int] | None:
    from ..errors import InputError

    if not text:
        return None
    try:
        return [int(t) for t in text.replace("x", ",").split(",")]
    except ValueError:
        raise InputError(f"--tile takes sizes like 256 or 96,96,96; got {text!r}.") from None


def output_name(src: Path, suffix: str, fmt: str) -> str:
    from ..data import stem

    return f"{stem(src)}_{suffix}" + (".tif" if fmt == "tiff" else ".nii.gz")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..checkpoint import load_model
    from ..data import read_image, stem, write_image
    from ..data.manifest import write_json_atomic
    from ..errors import AttnSegError, InputError
    from ..inference import predict

    tile = _parse_tile(args.tile)
    model = load_model(args.model, device=args.device)
    out = Path(args.out)
    failed = 0
    for src in map(Path, args.inputs):
        try:
            existing = _existing_outputs(out, src)
            if existing and not args.overwrite:
                raise InputError(
                    f"{out} already holds outputs for this input ({', '.join(p.name for p in existing[:3])}"
                    f"{', ...' if len(existing) > 3 else ''}); a mask there may have been corrected by hand. "
                    "Choose another --out, or pass --overwrite to replace them."
                )
            vol = read_image(src)
            with TileProgress(src.name) as progress:
                pred = predict(model, vol.data, tile=tile[0] if tile and len(tile) == 1 else tile,
                               overlap=args.overlap, attention=args.attention, device=args.device,
                               precision=args.precision, mode=args.mode, tta=args.tta, spacing=vol.spacing,
                               diameter=args.diameter, brain_extraction={"on": True, "off": False}.get(args.brain_extraction),
                               progress=progress, return_probabilities=not args.no_prob)
            fmt = "tiff" if vol.meta.get("format") == "tiff" else "nifti"
            for old in existing:  # --overwrite: a stale map of a level this model lacks must not linger
                old.unlink()
            written = [write_image(out / output_name(src, "mask", fmt), np.asarray(pred.labels), like=vol)]
            if pred.probabilities is not None:
                fg = np.asarray(pred.probabilities[1:], np.float32)
                written.append(write_image(out / output_name(src, "prob", fmt), fg[0] if fg.shape[0] == 1 else fg,
                                           like=vol))
            maps = []
            for amap in pred.attention:
                # maps keep their native resolution: the file's spacing is the map's pixel size
                spacing = tuple(s * sc for s, sc in zip(vol.spacing[-amap.data.ndim:], amap.scale))
                affine = None
                if vol.affine is not None:
                    affine = _map_affine(vol.affine, amap)
                level = amap.name.replace(" ", "_").replace("/", "-")
                written.append(write_image(out / output_name(src, f"attention_{level}", fmt),
                                           np.asarray(amap.data, np.float32), spacing=spacing, affine=affine))
                maps.append({"file": written[-1].name, "name": amap.name, "level": amap.level,
                             "scale": list(amap.scale), "translate": list(amap.translate)})
            reference = _link_input(out, src)
            record = _record(src, reference, model, pred, written)
            record.update(mask=written[0].name, probability=written[1].name if pred.probabilities is not None else None,
                          attention=maps, shape=list(pred.labels.shape), spacing=list(vol.spacing))
            write_json_atomic(out / f"{stem(src)}_predict.json", record)
            print(f"{src}: {pred.params['tiles']} tiles on {pred.device} ({pred.precision}), "
                  f"{pred.timings['total_s']:.1f} s -> {out}")
            for w in pred.warnings:
                print(f"{src}: warning: {w}", file=sys.stderr)
        except AttnSegError as exc:
            failed += 1
            print(f"{src}: error: {exc}", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(args.inputs)} inputs failed", file=sys.stderr)
    return 1 if failed else 0


def _existing_outputs(out: Path, src: Path) -> list[Path]:
    """Files an earlier run wrote for ``src`` in ``out`` (mask, prob, maps, reference, record)."""
    from ..data import stem

    if not out.is_dir():
        return []
    s = stem(src)
    names = [f"{s}_mask", f"{s}_prob", f"{s}_image", f"{s}_predict.json"]
    found = [p for p in out.iterdir() if p.name.startswith(f"{s}_attention_")
             or any(p.name == n or p.name.startswith(n + ".") for n in names)]
    order = {f"{s}_mask": 0, f"{s}_prob": 1}  # name the mask first: it is what a user may have corrected
    return sorted(found, key=lambda p: (order.get(p.name.split(".")[0], 2), p.name))


def _link_input(out: Path, src: Path) -> str | None:
    """A copy-free reference to the input beside its outputs: a symlink ``<stem>_image<ext>``.

    Nothing is made when the outputs already sit next to the input, or where the file system refuses
    links (the record written beside the outputs still names the input).
    """
    from ..data import stem

    src = src.resolve()
    if src.parent == out.resolve():
        return src.name
    suffix = src.name[len(stem(src)):]  # .tif, .nii.gz, ... ("" for a DICOM folder)
    link = out / f"{stem(src)}_image{suffix}"
    try:
        link.symlink_to(src, target_is_directory=src.is_dir())
    except OSError:
        return None
    return link.name


def _record(src: Path, reference: str | None, model, pred, written: list[Path]) -> dict:
    """What produced the outputs: the input, the model (with its weights' digest) and the run's settings."""
    from .. import __version__

    src = src.resolve()
    st = src.stat()
    card = getattr(model, "card", None)
    return {
        "input": str(src),
        "input_size_bytes": st.st_size if src.is_file() else sum(p.stat().st_size for p in src.rglob("*") if p.is_file()),
        "input_modified": st.st_mtime,
        "input_reference": reference,
        "outputs": [p.name for p in written],
        "model": getattr(card, "name", None),
        "model_path": getattr(model, "checkpoint_path", None),
        "model_weights_sha256": getattr(card, "weights_sha256", None),
        "classes": list(pred.classes),
        "device": pred.device,
        "precision": pred.precision,
        "params": {k: v for k, v in pred.params.items() if isinstance(v, (int, float, str, bool, list, tuple, type(None)))},
        "timings_s": pred.timings,
        "warnings": list(pred.warnings),
        "napari_attnseg": __version__,
    }


def _map_affine(affine, amap):
    """NIfTI affine of a map on its own grid: index (i, j, k) of the map -> the image's world mm."""
    import numpy as np

    a = np.asarray(affine, float)
    # array axes are (k, j, i); NIfTI axes are (i, j, k): reverse the map's scale/translate
    scale = list(reversed(amap.scale)) + [1.0] * (3 - len(amap.scale))
    trans = list(reversed(amap.translate)) + [0.0] * (3 - len(amap.translate))
    m = np.eye(4)
    m[:3, :3] = np.diag(scale)
    m[:3, 3] = trans
    return a @ m

"""What ``out`` holds for a case besides the outputs of a run and their record (:mod:`.outputs`: edited masks, names).

* :func:`orphaned_mask`: a mask whose header says attnseg wrote it, without its record (the user deleted
  ``<case>_predict.json``): not a user's own file, but maybe corrected since; :func:`orphan_message` says so and what to
  do (``--overwrite`` keeps it in ``edited_masks/``).
* :func:`distinct_names`: cases whose names differ only by upper/lower case (``Case3``, ``case3``) get names that stay
  two files on a file system that ignores case (macOS, Windows).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .inputs import EDITED_DIR


def orphaned_mask(out: str | os.PathLike, src: str | os.PathLike, case: str | None = None) -> tuple[Path, dict] | None:
    """``(mask, model)`` when the files at case ``case``'s output names in ``out``, without a record or a marker of ours
    beside them (:func:`~napari_attnseg.results.foreign_outputs`), are a mask whose header says attnseg wrote it (the
    model that made it) and outputs a run writes with it (probability and attention maps, the link to the input): the
    outputs of a run whose record the user deleted, not a user's own files. None otherwise. That mask may have been
    corrected since (napari's Save keeps its model), so it is kept: never replaced without ``--overwrite``, which
    moves it to ``edited_masks/``."""
    from ..results import case_name, foreign_outputs

    found = foreign_outputs(Path(out), Path(src), case)
    s = case_name(Path(src), case)
    masks = [p for p in found if p.name.startswith(f"{s}_mask.") and p.is_file() and not p.is_symlink()]
    theirs = [p for p in found if p not in masks and not (p.is_symlink() and p.name.startswith(f"{s}_image")) and not (
        p.is_file() and not p.is_symlink() and p.name.startswith((f"{s}_prob.", f"{s}_attention_")))]
    if len(masks) != 1 or theirs:
        return None
    model = _model_of(masks[0])
    return (masks[0], model) if model else None


def _model_of(mask: Path) -> dict | None:
    """The model a mask's header says made it (a TIFF's description, a NIfTI's header note); None when it names none."""
    from ..data import image_format
    from ..data.volume import model_info_of

    try:
        if image_format(mask) == "tiff":
            from ..data.tiff import mask_marks

            return model_info_of((mask_marks(mask) or {}).get("model_info"))
        if image_format(mask) == "nifti":
            import nibabel as nib

            from ..data.nifti import _ours

            return model_info_of(_ours(nib.load(str(mask)).header).get("model"))
    except Exception:  # noqa: BLE001 - unreadable: nothing says attnseg wrote it
        return None
    return None


def orphan_message(out: Path, src: Path, name: str, mask: Path, model: dict) -> str:
    """Why the case of ``src`` is not computed: ``out`` holds its mask (:func:`orphaned_mask`), its record is gone."""
    from ..results import foreign_outputs, record_path

    others = [p.name for p in foreign_outputs(out, src, name) if p != mask]
    who = model.get("model") or f"weights {str(model.get('weights_sha256'))[:12]}"
    return (f"{out} holds {mask.name} (attnseg wrote it: {who}, its header says)"
            f"{' and ' + ', '.join(others[:3]) + (', ...' if len(others) > 3 else '') if others else ''}, but the "
            f"record of this case, {record_path(out, src, name).name}, is missing (deleted?): without it nobody can "
            f"tell whether that mask was corrected since, so it is kept as it is and {src.name} was not computed. To "
            "compute it again, run this input with --overwrite (overwrite=True in Python; over the whole cohort it "
            f"redoes every finished case too): the mask is then kept in {out / EDITED_DIR}, not deleted. Or move "
            f"{'these files' if others else 'it'} away and run the same command.")


def finished_or_missing(out: Path, src: Path, name: str | None = None) -> tuple[dict, list[str]]:
    """``(record, [])`` of a finished case (:func:`~napari_attnseg.results.finished_record`), or ``({}, outputs its
    record names that are not in out)`` (:func:`~napari_attnseg.results.missing_outputs`), from one read of the record
    (those two read it each: with case_state's read, a finished case whose probability map was deleted had its record
    read three times on a rerun, twice now, as any finished case)."""
    from ..results import record_path

    try:
        record = json.loads(record_path(out, src, name).read_text())
    except (OSError, ValueError):
        return {}, []
    if not isinstance(record, dict):
        return {}, []
    gone = [n for n in record.get("outputs") or [] if not (Path(out) / n).is_file()]
    return (record if "mask" in record and not gone else {}), gone


def distinct_names(out: str | os.PathLike, cases: list[Path], names: list[str]) -> tuple[list[str], dict[int, str]]:
    """``names`` made distinct also when upper and lower case are one: ``Case3.tif`` and ``case3.tif`` (two files on
    Linux) write ``Case3_mask.tif`` and ``case3_mask.tif``, one file on a file system that ignores case (macOS, Windows
    and their shares: the second case replaced the first's results, both reported done). Of names that differ only by
    case, those whose results ``out`` holds under that very name keep it (a rerun renames no outputs), else the first;
    the others get ``_2``, ``_3``, ... (the one an earlier run into ``out`` gave that input, found by its record).
    Returns the names and, for each renamed case, the note its warnings (and summary row) give."""
    from ..results import RECORD_SUFFIX

    out = Path(out)
    try:
        listing = set(os.listdir(out))
    except OSError:
        listing = set()
    folded = {n.casefold(): n for n in sorted(listing)}

    def recorded(file: str | None) -> str | None:  # the input a record in out names
        try:
            return os.path.realpath(json.loads((out / file).read_text())["input"]) if file else None
        except (OSError, ValueError, KeyError, TypeError):
            return None

    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(n.casefold(), [])
        groups[n.casefold()] += [] if n in groups[n.casefold()] else [n]
    used, kept, notes = {n.casefold() for n in names}, list(names), {}
    numbered = {f[:-len(RECORD_SUFFIX)].rsplit("_", 1)[0].casefold() for f in listing if f.endswith(RECORD_SUFFIX)
                and f[:-len(RECORD_SUFFIX)].rsplit("_", 1)[-1].isdigit()}  # (names an n_K record was given for)

    def earlier_name(n: str, inputs: set[str]) -> str:  # the name n_K an earlier run into out gave one of inputs
        found = sorted(f[:-len(RECORD_SUFFIX)] for f in listing if f.casefold().startswith(f"{n}_".casefold())
                       and f.endswith(RECORD_SUFFIX) and f[len(n) + 1:-len(RECORD_SUFFIX)].isdigit()
                       and recorded(f) in inputs and f[:-len(RECORD_SUFFIX)].casefold() not in used)
        return found[0] if found else ""

    def rename(n: str, inputs: set[str], note: str) -> None:
        k, new = 2, earlier_name(n, inputs)
        while not new:
            candidate = f"{n}_{k}"
            record = folded.get(f"{candidate}{RECORD_SUFFIX}".casefold())
            new = candidate if candidate.casefold() not in used and recorded(record) in (None, *inputs) else ""
            k += 1
        used.add(new.casefold())
        for i in (i for i, m in enumerate(names) if m == n):
            kept[i] = new
            notes[i] = f"named {new}, not {n}: {note}"

    for group in groups.values():
        inputs = {n: {os.path.realpath(c) for c, m in zip(cases, names) if m == n} for n in group}
        if len(group) == 1:  # alone in this run: a twin an earlier run named (Case3's outputs in out, case3 now)
            n, own = group[0], f"{group[0]}{RECORD_SUFFIX}"
            twin = folded.get(own.casefold())
            if (twin not in (None, own) or n.casefold() in numbered) and not (
                    own in listing and recorded(own) in inputs[n]) and (
                    twin not in (None, own) or earlier_name(n, inputs[n])):  # (records read only where one may be)
                rename(n, inputs[n], f"the name an earlier run into {out} gave it, whose outputs' names would differ "
                       f"from those of {twin[:-len(RECORD_SUFFIX)] if twin else 'another case'} only by upper/lower "
                       "case, which a file system ignoring case (macOS, Windows) holds as one file")
            continue
        keep = [n for n in group if f"{n}{RECORD_SUFFIX}" in listing and recorded(f"{n}{RECORD_SUFFIX}") in inputs[n]]
        keep = keep or group[:1]
        first = next(c for c, m in zip(cases, names) if m == keep[0])
        for n in (n for n in group if n not in keep):
            rename(n, inputs[n], f"its outputs' names would differ from those of {Path(first).name} ({keep[0]}) only "
                   "by upper/lower case, which a file system ignoring case (macOS, Windows) holds as one file")
    return kept, notes

"""Time-lapse follow-ups: which frames are one movie to the split.

Two *different* movies of one file name (exp1/movie.tif and exp2/movie.tif), exported into one dataset with disjoint
reviewed frames (0-2 of one, 3-5 of the other), were one movie to the split: it grouped frames by file name and frame
size, and its "a frame twice means two movies" rule only fires when frame numbers repeat. It validated next to a
trained frame of the same movie and told the user to "export a second movie", which they had done. Each frame's
manifest record now holds the whole movie's sha256 (``movie_sha256``): rounds of one movie share it, another movie
never does; a dataset exported before it keeps the file-name rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tifffile
from test_audit_train_data import cfg

from napari_attnseg.data.dataset import read_dataset
from napari_attnseg.data.export import array_sha256, export_case
from napari_attnseg.training.split import make_split
from napari_attnseg.training.split_movies import CaseIds, case_axes
from napari_attnseg.training.trainer import Trainer

NUCLEI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nuclei2d"


def _movie(y: int, x: int, n: int = 6, empty: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A time-lapse of real nuclei: a 64 x 64 crop at (y, x) drifting 4 px a frame; its nuclei as the mask."""
    im, lab = tifffile.imread(NUCLEI / "image.tif"), tifffile.imread(NUCLEI / "labels.tif")
    frames = np.stack([im[y + 4 * t:y + 4 * t + 64, x:x + 64] for t in range(n)])
    masks = np.stack([(lab[y + 4 * t:y + 4 * t + 64, x:x + 64] > 0).astype(np.uint8) for t in range(n)])
    return frames, (np.zeros_like(masks) if empty else masks)


def _ids(ds: Path):
    d = read_dataset(ds)
    ids = CaseIds([c.case_id for c in d.cases], {c.case_id: c.source_name for c in d.cases}, case_axes(d.cases))
    return d, ids, [c.load()[1] for c in d.cases]


def _bases(ids, parts) -> set[str]:
    return {ids[p.case].rsplit("_t", 1)[0] for p in parts}


def test_two_movies_of_one_file_name_with_disjoint_frames_are_two_movies_to_the_trainer(tmp_path):
    """Was: validation case_0003_t004-t005 next to its trained t003, 'every case is a frame of the time-lapse
    movie.tif (case_0000 + case_0003) ... (export a second movie to validate on another one)'."""
    ds = tmp_path / "ds"
    for (frames, masks), reviewed in ((_movie(0, 0), [0, 1, 2]), (_movie(200, 200), [3, 4, 5])):
        export_case(frames, masks, ds, "nnunet", source_name="movie.tif", axes="TYX", reviewed_slices=reviewed)
    t = Trainer(cfg(ds, tmp_path, val_fraction=0.34))
    val, train = _bases(t.case_ids, t.split.val), _bases(t.case_ids, t.split.train)
    assert len(val) == 1 and len(train) == 1 and not val & train, t.split.describe()  # each movie whole on one side
    said = " ".join(t.split.warnings)
    assert "every case is a frame" not in said and "export a second movie" not in said, said
    assert "the 3 frames of the time-lapse case_0000 are all in" in said, said
    assert "the 3 frames of the time-lapse case_0003 are all in" in said, said


def test_each_frame_records_its_movie_rounds_share_it_other_movies_do_not(tmp_path):
    ds = tmp_path / "ds"
    a, masks_a = _movie(0, 0)
    b, masks_b = _movie(200, 200)
    r1 = export_case(a, masks_a, ds, "nnunet", source_name="movie.tif", axes="TYX", reviewed_slices=[0, 1, 2])
    r2 = export_case(a, masks_a, ds, "nnunet", source_name="movie.tif", axes="TYX", reviewed_slices=[0, 1, 2, 3, 4, 5])
    r3 = export_case(b, masks_b, ds, "nnunet", source_name="movie.tif", axes="TYX", reviewed_slices=[3, 4])
    export_case(a[0], masks_a[0], ds, "nnunet", source_name="still.tif")  # a 2D image: no movie
    cases = {c["case_id"]: c for c in json.loads((ds / "manifest.json").read_text())["cases"]}
    movie = {cid: cases[cid].get("movie_sha256") for cid in cases}
    assert {movie[c] for c in r1.frames + r2.frames} == {array_sha256(a)}  # the whole stack, every round
    assert {movie[c] for c in r3.frames} == {array_sha256(b)} != {array_sha256(a)}
    assert list(movie.values())[-1] is None  # (a plain case's record has no such field)
    d, ids, labels = _ids(ds)
    split = make_split(labels, ids, ignore=d.ignore_label, val_fraction=0.3, seed=0)
    movie_a = set(r1.frames + r2.frames)
    val = {ids[p.case] for p in split.val}
    assert len(val & movie_a) in (0, len(movie_a)), split.describe()  # the rounds of movie a: one side
    assert "the 9 frames of the time-lapse movie.tif (case_0000 + case_0003) are all in" in " ".join(split.warnings)


def test_the_only_movie_with_foreground_is_split_the_other_movie_of_its_name_stays_whole(tmp_path):
    """The other movie's reviewed frames hold no nucleus: the movie with foreground validates on its latest frames
    and trains on the others, said by its name (was: both one movie, 'every case is a frame of ... movie.tif')."""
    ds = tmp_path / "ds"
    export_case(*_movie(0, 0), ds, "nnunet", source_name="movie.tif", axes="TYX", reviewed_slices=[0, 1, 2])
    export_case(*_movie(200, 200, empty=True), ds, "nnunet", source_name="movie.tif", axes="TYX",
                reviewed_slices=[3, 4, 5])
    d, ids, labels = _ids(ds)
    split = make_split(labels, ids, ignore=d.ignore_label, val_fraction=0.34, seed=0)
    val = sorted(ids[p.case] for p in split.val)
    assert val == ["case_0000_t002", "case_0003_t003", "case_0003_t004", "case_0003_t005"], split.describe()
    said = " ".join(split.warnings)
    assert "the time-lapse case_0000 is the only one with foreground, so it is split" in said, said
    assert "the 3 frames of the time-lapse case_0003 are all in validation" in said, said


def _strip_movies(ds: Path, keep: set[str] = frozenset()) -> None:
    """The manifest as an earlier version wrote it: no movie_sha256 (except on the cases ``keep``)."""
    path = ds / "manifest.json"
    manifest = json.loads(path.read_text())
    for c in manifest["cases"]:
        if c["case_id"] not in keep:
            c.pop("movie_sha256", None)
    path.write_text(json.dumps(manifest))


def test_an_older_dataset_keeps_the_file_name_rule_and_an_older_round_joins_its_recorded_movie(tmp_path):
    a, masks = _movie(0, 0)
    old = tmp_path / "old"  # a movie exported in two rounds by an earlier version: one movie by its file name
    export_case(a, masks, old, "nnunet", source_name="movie.tif", axes="TYX", reviewed_slices=[0, 1, 2])
    export_case(a, masks, old, "nnunet", source_name="movie.tif", axes="TYX", reviewed_slices=[3, 4, 5])
    _strip_movies(old)
    d, ids, labels = _ids(old)
    assert ids.movies == [None] * 6
    split = make_split(labels, ids, ignore=d.ignore_label, val_fraction=0.34, seed=0)
    assert sorted(ids[p.case] for p in split.val) == ["case_0003_t004", "case_0003_t005"], split.describe()
    mixed = tmp_path / "mixed"  # round 1 by an earlier version, round 2 (with the movie recorded) by this one
    r1 = export_case(a, masks, mixed, "nnunet", source_name="movie.tif", axes="TYX", reviewed_slices=[0, 1, 2])
    export_case(a, masks, mixed, "nnunet", source_name="movie.tif", axes="TYX", reviewed_slices=[3, 4, 5])
    export_case(a[0], masks[0], mixed, "nnunet", source_name="still.tif")
    _strip_movies(mixed, keep={f"case_0003_t00{t}" for t in (3, 4, 5)})
    d, ids, labels = _ids(mixed)
    for seed in range(4):
        split = make_split(labels, ids, ignore=d.ignore_label, val_fraction=0.34, seed=seed)
        val = {ids[p.case] for p in split.val}
        assert not val & set(r1.frames) or set(r1.frames) <= val, (seed, split.describe())  # the rounds together
        assert len({ids[p.case] for p in split.val} & {f"case_0003_t00{t}" for t in (3, 4, 5)}) in (0, 3), seed

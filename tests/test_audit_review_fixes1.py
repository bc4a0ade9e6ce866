"""Review fixes: (1) an RTSTRUCT (or a class-named mask) exported into an existing dataset whose label table lists the
same classes in another order is renumbered by name, not by the file's ROI order (was: classes swapped, exit 0);
(2) a time-lapse exported in two rounds (the second as a new case) is one movie to the split; (3) a time-lapse into
a dataset where an earlier version wrote a movie as one 3D case is refused saying so (was: 'this one is 2D')."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import test_audit_dicom_labels as base
import tifffile
from test_audit_dicom_labels import _contours, ct_series, rtstruct, tumour_rois

from napari_attnseg.data.export import export_case
from napari_attnseg.errors import InputError

NUCLEI = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nuclei2d"


@pytest.fixture(scope="module")
def lung():
    return base.lung.__wrapped__()


def _box(labels: np.ndarray) -> np.ndarray:
    box = np.zeros_like(labels)
    box[3, 40:90, 40:70] = 1
    return box


def _patient(lung, folder: Path, rois: dict) -> Path:
    cts = ct_series(lung, folder)
    return rtstruct(lung, cts, folder / "RS.dcm", rois)


def _label_file(ds: Path, case_id: str) -> np.ndarray:
    manifest = json.loads((ds / "manifest.json").read_text())
    case = next(c for c in manifest["cases"] if c["case_id"] == case_id)
    return np.asarray(nib.load(ds / case["files"]["label"]).dataobj).transpose(2, 1, 0)


# 1. classes matched by name ---------------------------------------------------------------------------------------


def test_an_rtstruct_listing_its_rois_in_another_order_goes_in_by_name(tmp_path, lung, capsys):
    """Patient p1's RS.dcm lists GTV-1, Box; p2's Box, GTV-1 (another planning system's order): p2's tumour is the
    dataset's GTV-1 (value 1) as p1's is, with a note saying the classes were renumbered."""
    from napari_attnseg.cli import main

    _, labels, _, _, _ = lung
    box = _box(labels)
    rois = {"GTV-1": tumour_rois(labels), "Box": {3: _contours(box[3] > 0)}}
    ds = tmp_path / "ds"
    for p, order in (("p1", ["GTV-1", "Box"]), ("p2", ["Box", "GTV-1"])):
        rs = _patient(lung, tmp_path / p / "CT", {k: rois[k] for k in order})
        assert main(["export", "--image", str(rs.parent), "--labels", str(rs), "--dataset", str(ds),
                     "--case-id", p]) == 0
    err = capsys.readouterr().err
    assert json.loads((ds / "manifest.json").read_text())["label_names"] == ["background", "GTV-1", "Box"]
    p1, p2 = _label_file(ds, "p1"), _label_file(ds, "p2")
    np.testing.assert_array_equal(p1 == 1, labels == 1)  # (the smaller ROI keeps the overlap: the tumour whole)
    np.testing.assert_array_equal(p2, p1)  # was: p2's 1 the box, its 2 the tumour
    assert "classes renumbered by name to the dataset's table: Box 1->2, GTV-1 2->1" in err, err
    assert "using the class names of its ROIs: background, Box, GTV-1" in err, err


def test_an_rtstruct_with_a_roi_the_dataset_lacks_is_refused_naming_it_and_roi_picks_the_others(tmp_path, lung,
                                                                                                 capsys):
    """A ROI the dataset's table does not have: refused, naming it and how to pick ROIs (was: exported as the
    dataset's class 2, 'Box'); --roi GTV-1 then exports the tumour as GTV-1, saying Box is absent."""
    from napari_attnseg.cli import main

    _, labels, _, _, _ = lung
    box = _box(labels)
    ds = tmp_path / "ds"
    rs1 = _patient(lung, tmp_path / "p1" / "CT", {"GTV-1": tumour_rois(labels), "Box": {3: _contours(box[3] > 0)}})
    assert main(["export", "--image", str(rs1.parent), "--labels", str(rs1), "--dataset", str(ds)]) == 0
    rs2 = _patient(lung, tmp_path / "p2" / "CT", {"Lung": {3: _contours(box[3] > 0)}, "GTV-1": tumour_rois(labels)})
    capsys.readouterr()
    assert main(["export", "--image", str(rs2.parent), "--labels", str(rs2), "--dataset", str(ds)]) == 1
    err = capsys.readouterr().err
    assert "has class Lung, which the dataset in" in err and "--roi GTV-1,Box" in err, err
    assert len(json.loads((ds / "manifest.json").read_text())["cases"]) == 1  # nothing written
    assert main(["export", "--image", str(rs2.parent), "--labels", str(rs2), "--dataset", str(ds), "--roi",
                 "GTV-1"]) == 0
    err = capsys.readouterr().err
    assert "has no class Box of the dataset's label table" in err, err
    np.testing.assert_array_equal(_label_file(ds, "case_0001"), labels)


def test_the_correct_tabs_export_of_a_class_named_mask_renumbers_it_by_name(tmp_path, lung):
    """export_case, as the Correct tab calls it with the layer's class names (an RTSTRUCT opened in napari: its ROI
    order): the mask and the prediction are renumbered onto the dataset's table; unreviewed slices stay 'ignore'."""
    ct, labels, _, _, _ = lung
    box = _box(labels) * (labels == 0)
    ds = tmp_path / "ds"
    first = (labels + 2 * box).astype(np.uint8)  # GTV-1 = 1, Box = 2
    export_case(ct, first, ds, "nnunet", label_names=["background", "GTV-1", "Box"], case_id="a")
    swapped = np.where(first == 1, 2, np.where(first == 2, 1, 0)).astype(np.uint8)  # Box = 1, GTV-1 = 2
    pred = swapped.copy()
    pred[3, 40:45, 40:70] = 0  # the user added 5 rows of the box
    rec = export_case(ct, swapped, ds, "nnunet", label_names=["Background", "box", "GTV_1"], case_id="b",
                      reviewed_slices=[2, 3, 4], prediction=pred)  # (named as training matches names)
    out = _label_file(ds, "b")
    np.testing.assert_array_equal(out[2:5], first[2:5])
    assert (out[[0, 1, 5, 6]] == 3).all()  # 'ignore' (the table's 3 classes, then ignore)
    assert any("renumbered by name" in w and "box 1->2, GTV_1 2->1" in w for w in rec.warnings), rec.warnings
    manifest = json.loads((ds / "manifest.json").read_text())
    stats = next(c for c in manifest["cases"] if c["case_id"] == "b")["edit_stats"]["per_class"]
    assert stats["2"]["added"] == 5 * 30 and stats["1"]["added"] == 0, stats  # the box is the dataset's class 2
    with pytest.raises(InputError, match=r"has class tumour, which the dataset in .* does not have"):
        export_case(ct, swapped, ds, "nnunet", label_names=["background", "box", "tumour"], case_id="c")


# 2. a movie exported in two rounds is one movie ----------------------------------------------------------------------


def _movie(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    im, lab = tifffile.imread(NUCLEI / "image.tif"), tifffile.imread(NUCLEI / "labels.tif")
    return (np.stack([im[8 * t:8 * t + 64, :64] for t in range(n)]),
            np.stack([(lab[8 * t:8 * t + 64, :64] > 0).astype(np.uint8) for t in range(n)]))


def test_a_movie_exported_in_two_rounds_is_one_movie_to_the_split(tmp_path):
    """Round 1 exports frames 0-2, round 2 frames 3-5 of the same movie as a new case (napari's case id left empty):
    training's split (the Trainer, as attnseg finetune builds it) keeps them one movie, validating on its last
    frames, and says so (was: case_0000's frames validated, case_0003's trained, 'each movie is on one side')."""
    from test_audit_train_data import cfg

    from napari_attnseg.training.trainer import Trainer

    movie, masks = _movie()
    ds = tmp_path / "ds"
    r1 = export_case(movie, masks, ds, "nnunet", reviewed_slices=[0, 1, 2], source_name="movie.tif", axes="TYX")
    r2 = export_case(movie, masks, ds, "nnunet", reviewed_slices=[3, 4, 5], source_name="movie.tif", axes="TYX")
    assert r1.frames[0].startswith("case_0000_") and r2.frames[0].startswith("case_0003_")
    t = Trainer(cfg(ds, tmp_path, val_fraction=0.34))
    val = [t.case_ids[p.case] for p in t.split.val]
    assert val == ["case_0003_t004", "case_0003_t005"], t.split.describe()  # its latest frames, a block
    said = " ".join(t.split.warnings)
    assert "every case is a frame of the time-lapse movie.tif (case_0000 + case_0003)" in said, said


def test_two_movies_one_exported_in_two_rounds_stay_whole(tmp_path):
    from napari_attnseg.data.dataset import read_dataset
    from napari_attnseg.training.split import make_split
    from napari_attnseg.training.split_movies import CaseIds

    movie, masks = _movie()
    ds = tmp_path / "ds"
    export_case(movie, masks, ds, "nnunet", reviewed_slices=[0, 1, 2], source_name="a.tif", axes="TYX")
    export_case(movie[:4, ::-1], masks[:4, ::-1], ds, "nnunet", source_name="b.tif", axes="TYX")
    export_case(movie, masks, ds, "nnunet", reviewed_slices=[3, 4, 5], source_name="a.tif", axes="TYX")
    d = read_dataset(ds)
    ids = CaseIds([c.case_id for c in d.cases], {c.case_id: c.source_name for c in d.cases})
    labels = [c.load()[1] for c in d.cases]
    movie_a = {cid for cid, c in zip(ids, d.cases) if c.source_name.startswith("a.tif")}
    assert len(movie_a) == 6
    for seed in range(6):
        split = make_split(labels, ids, ignore=d.ignore_label, val_fraction=0.4, seed=seed)
        val = {ids[p.case] for p in split.val}
        assert len(val & movie_a) in (0, 6), (seed, split.describe())  # was: seeds 0-4 validated on one round of a.tif
        said = " ".join(split.warnings)
        assert "the 6 frames of the time-lapse a.tif (case_0000 + case_0007) are all in" in said, said


# 3. a time-lapse into a dataset an earlier version wrote it into as one 3D case ------------------------------------


def test_a_time_lapse_into_a_dataset_holding_it_as_one_3d_case_says_what_happened(tmp_path):
    movie, masks = _movie(4)
    ds = tmp_path / "ds"
    export_case(movie, masks, ds, "nnunet", reviewed_slices=[0, 1], source_name="movie.tif")  # the earlier layout
    with pytest.raises(InputError) as err:
        export_case(movie, masks, ds, "nnunet", reviewed_slices=[2, 3], source_name="movie.tif", axes="TYX")
    text = str(err.value)
    assert "case_0000 of this movie's shape 4x64x64: a time-lapse exported by an earlier version as one 3D case" in text
    assert "one 2D case per frame" in text and "new dataset folder" in text and "--format tiff" in text, text
    rec = export_case(movie, masks, tmp_path / "ds_tiff", "tiff", reviewed_slices=[2, 3], source_name="movie.tif",
                      axes="TYX")  # what the message offers: the TIFF layout keeps the movie as one t, y, x file
    with tifffile.TiffFile(tmp_path / "ds_tiff" / "labels" / f"{rec.case_id}.tif") as f:
        assert (f.series[0].axes, f.series[0].shape) == ("TYX", (4, 64, 64))


def test_two_movies_of_one_file_name_stay_two_movies(tmp_path):
    """exp1/movie.tif and exp2/movie.tif (one file name, one frame size) exported into one dataset: grouping frames
    by their source merged them into one movie validated on frames 3-5 of both, next to their trained frames 0-2.
    A frame index found twice means two movies: each stays whole on one side, as before source matching."""
    from napari_attnseg.data.dataset import read_dataset
    from napari_attnseg.training.split import make_split
    from napari_attnseg.training.split_movies import CaseIds

    movie, masks = _movie()
    ds = tmp_path / "ds"
    export_case(movie, masks, ds, "nnunet", source_name="movie.tif", axes="TYX")
    export_case(movie[:, ::-1], masks[:, ::-1], ds, "nnunet", source_name="movie.tif", axes="TYX")
    d = read_dataset(ds)
    ids = CaseIds([c.case_id for c in d.cases], {c.case_id: c.source_name for c in d.cases})
    labels = [c.load()[1] for c in d.cases]
    for seed in range(3):
        split = make_split(labels, ids, ignore=d.ignore_label, val_fraction=0.5, seed=seed)
        val = {ids[p.case].rsplit("_t", 1)[0] for p in split.val}
        train = {ids[p.case].rsplit("_t", 1)[0] for p in split.train}
        assert len(val) == 1 and len(train) == 1 and not val & train, (seed, val, train)

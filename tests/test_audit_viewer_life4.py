"""napari users after a run (audit "viewer life", fourth part): the layers File > Open brings back from a
`<stem>_predict.json` record kept the image's placement at opening (the image's pixel size typed afterwards left the
mask and heatmaps at the old size, while a Segment run's layers followed); a heatmap's note kept the world sizes of
its run after it followed a new placement; mixed-case scan names (Scan.Nii) made napari ask which reader; the Fine-tune
tab refused an output folder of its own inside the dataset (DS/model), which `attnseg finetune --out` takes."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

PLUGIN = "napari-attnseg"
DATA = Path("/work/shared/data")
T1 = DATA / "mni152" / "t1.nii.gz"


def _on_grid(layer, image, points) -> np.ndarray:
    """The image pixels ``layer``'s pixels ``points`` are drawn on."""
    return np.array([image.world_to_data(layer.data_to_world(p)) for p in points])


def _world_sizes(note: str) -> str:
    return re.search(r"image pixels \(([^)]*)\)", note).group(1)


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> Path:
    """`attnseg predict --attention` on a 96 x 96 crop of the real nuclei image with a pixel size of 0.5 um."""
    import tifffile

    from napari_attnseg.cli import main
    from napari_attnseg.models.registry import bundled_models

    if "nuclei-2d" not in bundled_models():
        pytest.skip("no bundled nuclei model")
    tmp = tmp_path_factory.mktemp("rec")
    crop = tifffile.imread(DATA / "nuclei2d" / "image.tif")[:96, :96]
    tifffile.imwrite(tmp / "crop.tif", crop, imagej=True, resolution=(2.0, 2.0), metadata={"unit": "um"})
    assert main(["predict", str(tmp / "crop.tif"), "--model", "nuclei-2d", "--out", str(tmp / "rec"),
                 "--attention", "--device", "cpu"]) == 0
    return tmp / "rec" / "crop_predict.json"


# -- 1, 2. a record's layers follow their image's placement; a heatmap's note says its new world sizes ----------------
@pytest.mark.gui
def test_a_records_layers_follow_a_placement_set_on_the_image_later(make_napari_viewer, record):
    """File > Open of crop_predict.json, then ``image.scale`` typed: the mask, probability and heatmaps stayed at the
    old size (drawn at twice the image's), and the heatmaps' notes still said the old size in um."""
    viewer = make_napari_viewer()
    viewer.open(str(record), plugin=PLUGIN)
    image = viewer.layers["crop"]
    results = [ly for ly in viewer.layers if ly is not image]
    names = {ly.name for ly in results}
    assert {"crop mask", "crop probability"} <= names and any("attention" in n for n in names), names
    corners = {ly.name: [(0.0, 0.0), tuple(float(n - 1) for n in ly.data.shape)] for ly in results}
    before = {ly.name: _on_grid(ly, image, corners[ly.name]) for ly in results}
    maps = [ly for ly in results if "attention" in ly.name]
    notes = {ly.name: _world_sizes(ly.help) for ly in maps}
    assert all(s.endswith("um") for s in notes.values()), notes
    image.scale, image.translate = (0.25, 0.25), (10.0, -4.0)
    for ly in results:
        np.testing.assert_allclose(_on_grid(ly, image, corners[ly.name]), before[ly.name], atol=1e-6, err_msg=ly.name)
    for ly in maps:  # half the pixel size: half the world size of one value, in the note and the status bar
        old = [float(v) for v in re.findall(r"[\d.]+", notes[ly.name])]
        new = [float(v) for v in re.findall(r"[\d.]+", _world_sizes(ly.help))]
        np.testing.assert_allclose(new, [v / 2 for v in old], rtol=2e-3, err_msg=ly.help)
        assert _world_sizes(ly.metadata["attnseg"]["help"]) == _world_sizes(ly.help)
    image.units = ("mm", "mm")  # (napari converts nothing: the sizes are now said in mm)
    assert all(_world_sizes(ly.help).endswith(("mm", "millimeter")) for ly in maps), [ly.help for ly in maps]
    image.scale = (1.0, 1.0)  # (in pixels: the note says pixels only, as a run on such an image says it)
    assert all("image pixels (" not in ly.help for ly in maps), [ly.help for ly in maps]


@pytest.mark.gui
def test_a_segment_runs_heatmap_note_says_the_world_sizes_of_the_new_placement(dock, qtbot):
    """A Segment run on an image of 0.5 um pixels, then its pixel size typed anew: the heatmaps followed, and their
    notes kept saying the run's world sizes."""
    import tifffile

    from napari_attnseg.models.registry import bundled_models

    if "nuclei-2d" not in bundled_models():
        pytest.skip("no bundled nuclei model")
    viewer, d = dock
    crop = tifffile.imread(DATA / "nuclei2d" / "image.tif")[:128, :128]
    image = viewer.add_image(crop, name="cells", scale=(0.5, 0.5), units=("um", "um"))
    d.segment.model_combo.value = "nuclei-2d"
    with qtbot.waitSignal(d.segment.run_done, timeout=120000) as done:
        d.segment.run_button.native.click()
    assert done.args == [True], d.segment.status.value
    maps = [ly for ly in viewer.layers if ly.name.startswith("cells attention ")]
    assert maps and all(_world_sizes(ly.help).endswith(("um", "micrometer")) for ly in maps), [ly.help for ly in maps]
    old = {ly.name: [float(v) for v in re.findall(r"[\d.]+", _world_sizes(ly.help))] for ly in maps}
    image.scale = (2.0, 2.0)
    for ly in maps:
        new = [float(v) for v in re.findall(r"[\d.]+", _world_sizes(ly.help))]
        np.testing.assert_allclose(new, [v * 4 for v in old[ly.name]], rtol=2e-3, err_msg=ly.help)


# -- 3. mixed-case scan names open with the plugin, no reader question ------------------------------------------------
def _copy_t1(path: Path) -> Path:
    if path.name.lower().endswith(".gz"):
        shutil.copyfile(T1, path)
    else:
        path.write_bytes(gzip.decompress(T1.read_bytes()))
    return path


@pytest.mark.gui
@pytest.mark.parametrize("name", ["scan.Nii.Gz", "Scan.Nii", "scan.nIi", "SCAN.nii.gz", "t1.nii.gz"])
def test_mixed_case_nifti_opens_with_the_plugin_without_a_question(opened, tmp_path, name):
    """File > Open of scan.Nii.Gz: napari asked which reader (its preferences match case-sensitively; the plugin had
    recorded *.nii.gz and *.NII.GZ only)."""
    (layer,) = opened(_copy_t1(tmp_path / name))
    assert layer.source.reader_plugin == PLUGIN and layer.data.shape == (189, 233, 197)


def test_the_any_case_patterns_keep_a_users_choice():
    """The any-case pattern is recorded where the user chose nothing, and not where they chose another reader for the
    pattern in one case (it would take Scan.Nii.Gz from that reader); run again, nothing more is added."""
    from types import SimpleNamespace

    from napari_attnseg._napari.io_hooks import PREFERRED_PATTERNS, prefer_plugin_readers
    from napari_attnseg._napari.reader_prefs import any_case

    assert any_case("*.nii.gz") == "*.[nN][iI][iI].[gG][zZ]" and any_case("*.nii.gz") in PREFERRED_PATTERNS
    settings = SimpleNamespace(plugins=SimpleNamespace(extension2reader={"*.nii.gz": "napari"}))
    added = prefer_plugin_readers(settings)
    chosen = settings.plugins.extension2reader
    assert chosen["*.nii.gz"] == "napari" and any_case("*.nii.gz") not in chosen
    assert chosen[any_case("*.nii")] == PLUGIN and chosen[any_case("*.ome.tif")] == PLUGIN and "*.nii" in added
    assert prefer_plugin_readers(settings) == []


# -- 4. the Fine-tune tab and `attnseg finetune --out` take the same output folders ------------------------------------
def test_the_finetune_tab_takes_the_output_folders_the_cli_takes(tmp_path):
    """The tab refused any folder inside the dataset ("DS/model": "inside the dataset"), which the CLI takes (exports
    and the dataset readers look only at the layout's folders); both refuse the dataset folder and its layout's."""
    from napari_attnseg._napari.finetune_run import output_problem
    from napari_attnseg.cli._train_common import refuse_out_in_dataset
    from napari_attnseg.errors import InputError

    ds = tmp_path / "DS"
    for sub in ("imagesTr", "labelsTr"):
        (ds / sub).mkdir(parents=True)
    for out, refused in [(ds / "model", False), (ds / "runs" / "a", False), (tmp_path / "DS-model", False),
                         (ds, True), (ds / "imagesTr", True), (ds / "labelsTr" / "m", True), (ds / ".." / "DS", True)]:
        try:
            refuse_out_in_dataset(out, ds)
            cli = False
        except InputError:
            cli = True
        panel = output_problem(str(out), str(ds))
        assert cli == refused and (panel is not None) == refused, (out, panel)
        if refused:
            assert "inside the dataset" in panel and str(tmp_path / "DS-model") in panel, panel

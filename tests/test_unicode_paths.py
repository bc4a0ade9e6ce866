"""Clinicians' folders: spaces, accents, dots and brackets in names, CSVs saved by Excel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_attnseg.cohort.inputs import gather
from napari_attnseg.data import read_image
from napari_attnseg.data.export import export_case
from napari_attnseg.data.io import write_image
from napari_attnseg.errors import InputError


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, np.arange(64, dtype=np.uint16).reshape(8, 8))
    return path


def test_a_csv_with_a_utf8_byte_order_mark_names_its_first_path(tmp_path):
    # Excel's "CSV UTF-8" starts with a BOM; it stuck to the first path ("\ufeffØrsted lab/... does not exist")
    base = tmp_path / "Patient Müller (2024)"
    first, second = _image(base / "Ørsted lab" / "cells 01.tif"), _image(base / "Série 1" / "cells 02.v1.tif")
    for header in ("", "path\r\n"):
        csv = base / "cas é.csv"
        csv.write_bytes(b"\xef\xbb\xbf" + f"{header}Ørsted lab/cells 01.tif\r\nSérie 1/cells 02.v1.tif\r\n".encode())
        got = gather(csv)
        assert got.cases == [first, second] and not got.hints


def test_a_csv_saved_as_windows_1252_is_read_with_a_note(tmp_path):
    # Excel's plain "CSV" on Windows: "Série" as one byte 0xe9 was refused ("'utf-8' codec can't decode")
    case = _image(tmp_path / "Série 1" / "scan.tif")
    csv = tmp_path / "cases.csv"
    csv.write_bytes("path\nSérie 1/scan.tif\n".encode("cp1252"))
    got = gather(csv)
    assert got.cases == [case]
    assert any("Windows-1252" in n for n in got.notes)


def test_a_glob_in_a_folder_whose_name_has_brackets(tmp_path):
    # "Scan [2024]/*.tif": glob read [2024] as a character class and found "No images"
    folder = tmp_path / "Scan [2024] é"
    a, b = _image(folder / "cells [a].tif"), _image(folder / "cells 02.v1.tif")
    assert gather(str(folder / "*.tif")).cases == [b, a]  # sorted: "0" < "["
    assert gather(str(folder / "**" / "*.tif")).cases == [b, a]
    other = _image(tmp_path / "Scan 2" / "x.tif")  # a real character class still works when no folder is so named
    assert gather(str(tmp_path / "Scan [12]" / "*.tif")).cases == [other]


def test_a_case_id_with_accents_or_spaces_is_refused_with_a_usable_id(tmp_path):
    # the message said "may only hold letters" and refused 'Müller 01', whose ü is a letter
    image, labels = np.zeros((8, 8), np.float32), np.zeros((8, 8), np.uint8)
    with pytest.raises(InputError) as err:
        export_case(image, labels, tmp_path / "résultats" / "jeu 1", "nnunet", case_id="Müller 01.v2")
    assert "A-Z" in str(err.value) and "'Muller_01_v2'" in str(err.value)
    assert not (tmp_path / "résultats").exists()
    rec = export_case(image, labels, tmp_path / "résultats" / "jeu 1", "nnunet", case_id="Muller_01_v2",
                      source_name="lung ct.v1.nii.gz")
    assert read_image(tmp_path / "résultats" / "jeu 1" / rec.files["label"]).data.shape == (8, 8)


def test_a_killed_runs_temporary_files_are_cleaned_for_an_input_with_brackets(tmp_path, tiny_checkpoint):
    """attnseg predict removes the temporary files a killed run left ('.<stem>_*.tmp*'); the stem was used as a
    glob pattern, so an input named 'cells [a].tif' never matched its own leftovers."""
    from napari_attnseg.cli import main as cli

    src = tmp_path / "cells [a].tif"
    write_image(src, (np.random.default_rng(0).random((48, 40)) * 200).astype(np.uint8))
    out = tmp_path / "out"
    out.mkdir()
    left = out / ".cells [a]_mask.tmp1"
    left.write_bytes(b"half a mask")
    assert cli(["predict", str(src), "--model", str(tiny_checkpoint(2)), "--out", str(out)]) == 0
    assert not left.exists()
    assert (out / "cells [a]_mask.tif").is_file()

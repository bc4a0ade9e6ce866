"""Peak memory (RSS) and output sizes of `attnseg predict` on big inputs, against the input's size.

Each run is a fresh process (`python -m napari_attnseg predict ...`); its peak RSS is the child's
``ru_maxrss``. Inputs are built from the shared real data (../shared/data), tiled to the size asked:

  python benchmarks/bench_memory.py                   # quick: CT 512x512x48 (brain-mri-3d), nuclei 4096^2
  python benchmarks/bench_memory.py --ct-slices 600 --side 16384 --repeats 1   # the sizes of the big-input audit

Prints and saves a table to benchmarks/results/memory.md (median of ``--repeats`` runs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import add_out_option, machine, results_dir, write

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def ct(folder: Path, slices: int) -> Path:
    """The radiomics lung CT (512x512x48 int16), mirrored along z up to ``slices``."""
    import nibabel as nib

    img = nib.load(str(DATA / "radiomics" / "lung1_image.nii.gz"))
    a = np.asarray(img.dataobj).astype(np.int16)
    reps = [a if i % 2 == 0 else a[..., ::-1] for i in range(-(-slices // a.shape[2]))]
    vol = np.ascontiguousarray(np.concatenate(reps, axis=2)[..., :slices])
    path = folder / f"ct{slices}.nii.gz"
    nib.save(nib.Nifti1Image(vol, img.affine, img.header), str(path))
    return path


def nuclei(folder: Path, side: int) -> Path:
    """The nuclei image (512x512 uint16) tiled to side x side, a tiled BigTIFF."""
    import tifffile

    img = tifffile.imread(DATA / "nuclei2d" / "image.tif")
    big = np.tile(img, (-(-side // 512), -(-side // 512)))[:side, :side]
    path = folder / f"nuclei{side}.tif"
    tifffile.imwrite(path, big, bigtiff=True, tile=(512, 512), compression="zlib")
    return path


def case(name: str, src: Path, in_bytes: int, model: str, extra: list[str], repeats: int, work: Path,
         baseline: float) -> dict:
    walls, peaks = [], []
    out = work / f"out-{name}"
    for _ in range(repeats):
        shutil.rmtree(out, ignore_errors=True)
        # a fresh interpreter per repeat, which reports its own peak (ru_maxrss, KB on Linux)
        argv = ["predict", str(src), "--model", model, "--out", str(out), "--device", "cpu", *extra]
        code = ("import resource, sys\nfrom napari_attnseg.cli import main\n"
                f"rc = main({argv!r})\n"
                "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(rc)")
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        if proc.returncode:
            raise SystemExit(f"{name}: attnseg predict failed:\n{proc.stderr[-2000:]}")
        peaks.append(int(proc.stderr.rsplit("PEAK", 1)[1].split()[0]) * 1024 / 1e6)  # MB
    files = {p.name: p.stat().st_size for p in out.iterdir() if p.is_file() and not p.is_symlink()}
    prob = sum(v for k, v in files.items() if "_prob" in k)
    maps = sum(v for k, v in files.items() if "_attention_" in k)
    peak = statistics.median(peaks)
    return {"case": name, "model": Path(model).stem, "options": " ".join(extra) or "defaults",
            "input in memory (MB)": round(in_bytes / 1e6), "wall (s)": round(statistics.median(walls), 1),
            "peak RSS (MB)": round(peak), "peak / input": round(peak * 1e6 / in_bytes, 1),
            "(peak - baseline) / input": round((peak - baseline) * 1e6 / in_bytes, 1),
            "outputs (MB)": round(sum(files.values()) / 1e6, 1), "prob file (MB)": round(prob / 1e6, 1),
            "attention files (MB)": round(maps / 1e6, 1), "runs": repeats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ct-slices", type=int, default=48, help="slices of the CT (512x512 each; 48: the real one)")
    ap.add_argument("--side", type=int, default=4096, help="side of the 2D nuclei image")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ct-model", default="brain-mri-3d", help="model for the CT (nuclei-2d runs it slice by slice)")
    add_out_option(ap)
    args = ap.parse_args()
    results_dir(args.out)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    work = Path(tempfile.mkdtemp(prefix="bench_memory_"))
    try:
        rows = []
        # the same command on a tiny input of each kind: Python, torch and the model, what any run costs
        tiny_ct, tiny_2d = ct(work, 8), nuclei(work, 64)
        base = {m: case("baseline", tiny_2d if m == "nuclei-2d" else tiny_ct, 1, m, [], 1, work, 0)["peak RSS (MB)"]
                for m in {args.ct_model, "nuclei-2d"}}
        src = ct(work, args.ct_slices)
        n = 512 * 512 * args.ct_slices * 2
        rows.append(case(f"CT 512x512x{args.ct_slices} int16", src, n, args.ct_model, [], args.repeats, work,
                         base[args.ct_model]))
        rows.append(case(f"CT 512x512x{args.ct_slices} int16 +att", src, n, args.ct_model, ["--attention"],
                         args.repeats, work, base[args.ct_model]))
        src = nuclei(work, args.side)
        n = args.side * args.side * 2
        rows.append(case(f"2D {args.side}^2 uint16", src, n, "nuclei-2d", [], args.repeats, work, base["nuclei-2d"]))
        rows.append(case(f"2D {args.side}^2 uint16 +att", src, n, "nuclei-2d", ["--attention"], args.repeats, work,
                         base["nuclei-2d"]))
        write("memory", rows, "# `attnseg predict`: peak memory and output sizes (benchmarks/bench_memory.py)",
              {"machine": machine(), "argv": sys.argv[1:]})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

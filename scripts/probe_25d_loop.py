"""Probe (issue 17, not product code): does a 2D model that sees the slices above and below fine-tune better in the
correction loop? nuclei-2d is widened to 3 input channels (slice z-1, z, z+1; the two new channels' first-layer
weights zero, so it starts exactly as nuclei-2d: checked on 6 slices) and the volume is given as those 3 channels;
then one round of ``benchmarks/bench_loop.py`` (the suggester's 2 slices + ``FIRST``, a fixed number of epochs, the
fine-tuning defaults otherwise).

    OMP_NUM_THREADS=2 python scripts/probe_25d_loop.py lung1 32,34 17 25dct /tmp/p25   # 2d | 25d | 25dct

``2d``: the plain loop (same-day baseline); ``25d``: three channels, the start model's percentile normalisation (a
3-channel image is not recognised as CT in HU); ``25dct``: three channels with the CT window [-1000, 400] forced.
Rows: ``<work>/<case>_<mode>/rows.json`` (as bench_loop's).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def widened(work: Path) -> str:
    """nuclei-2d with 3 input channels (the extra ones' weights zero), saved in ``work``; its path."""
    from napari_attnseg import create_model, load_model
    from napari_attnseg.checkpoint import save_model

    m = load_model("nuclei-2d", device="cpu")
    cfg = {k: v for k, v in m.card.config.items() if k not in ("in_channels", "out_channels", "spatial_dims")}
    new = create_model(m.card.arch, spatial_dims=2, in_channels=3, out_channels=m.out_channels, **cfg)
    state = new.state_dict()
    for k, v in m.state_dict().items():
        if state[k].shape == v.shape:
            state[k] = v
        else:  # the first convolution: the original weights on the middle channel
            w = torch.zeros_like(state[k])
            w[:, 1:2] = v
            state[k] = w
    new.load_state_dict(state)
    new.card = m.card
    path = str(work / "start25d.safetensors")
    save_model(new, path, card={"name": "nuclei-2d-25d", "config": {**m.card.config, "in_channels": 3}})
    return path


def main() -> None:
    import bench_loop

    import napari_attnseg.data.export as export_module
    from napari_attnseg.correct import parse_slice_ranges
    from napari_attnseg.data import read_image

    case, first, epochs, mode = sys.argv[1], parse_slice_ranges(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    work = Path(sys.argv[5] if len(sys.argv) > 5 else "/tmp/probe_25d") / f"{case}_{mode}"
    work.mkdir(parents=True, exist_ok=True)
    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "radiomics"
    vol = read_image(data / f"{case}_image.nii.gz")
    ref = np.asarray(read_image(data / f"{case}_labels.nii.gz").data).astype(np.int64)
    img = np.asarray(vol.data).astype(np.float32)
    start, image, overrides = "nuclei-2d", img, None
    if mode in ("25d", "25dct"):
        image = np.stack([np.concatenate([img[:1], img[:-1]]), img, np.concatenate([img[1:], img[-1:]])])
        start = widened(work)
        plain = export_module.export_case

        def export_case(im, *a, **k):  # (bench_loop exports a one-channel image)
            return plain(im, *a, channel_axis=im.ndim == 4, **k)

        export_module.export_case = export_case
        if mode == "25dct":
            overrides = {"normalization": {"scheme": "ct", "window": [-1000.0, 400.0]}}
    rows = bench_loop.run_loop(image, ref, tuple(vol.spacing), start, first, 1, 2, 4.0, "suggest", work,
                               epochs=epochs, overrides=overrides)
    (work / "rows.json").write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()

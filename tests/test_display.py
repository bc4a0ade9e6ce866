"""The CT check behind the display window, the Segment tab's model preset and the domain warnings runs on
every layer event: it reads a strided sample of the layer, never the whole (lazy) volume."""

from __future__ import annotations

import numpy as np

from napari_attnseg.display import is_hounsfield, window_limits


class LazyVolume:
    """An array-like that only answers slices (as a dask or zarr volume too big to load would); reading it
    whole raises."""

    def __init__(self, data: np.ndarray):
        self._data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.read = 0

    def __getitem__(self, key):
        part = self._data[key]
        self.read += part.size
        return part

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole volume was read")


def _ct(shape=(40, 256, 256)) -> np.ndarray:
    ct = np.full(shape, -1000.0, np.float32)  # air around a body of soft tissue
    ct[:, 40:216, 40:216] = np.random.default_rng(0).normal(40, 20, (shape[0], 176, 176))
    return ct


def test_the_ct_check_reads_a_sample_of_a_lazy_volume():
    ct = _ct()
    lazy = LazyVolume(ct)
    assert is_hounsfield(lazy) and is_hounsfield(ct)
    assert 0 < lazy.read <= 400_000 < ct.size  # about 200 k voxels of 2.6 M
    assert not is_hounsfield(LazyVolume(np.random.default_rng(1).random((40, 256, 256)).astype(np.float32)))
    lo, hi = window_limits(LazyVolume(ct), "full range")
    assert lo == -1000.0 and 40 < hi < 200
    assert is_hounsfield(ct[0].tolist())  # a nested list still works

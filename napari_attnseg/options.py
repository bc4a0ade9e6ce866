"""The choice lists of the public API, shared by ``predict``, ``train``, the CLI and the panels.

No heavy imports here: the CLI builds its parser from these without importing torch.
"""

from __future__ import annotations

MODES = ("2d", "3d", "slices")
"""``predict(mode=...)``: a 2D model on a 2D image, a 3D model on a volume, or a 2D model slice by
slice over the first axis of a volume. ``None`` picks one from the model and the image."""

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""Numeric precision for inference and training; ``auto`` picks per device."""

DEVICES = ("auto", "cpu", "cuda", "mps")
"""Devices by kind (``cuda:1`` also works); ``auto`` is CUDA, then Apple MPS, then the CPU."""

PROBABILITY_DTYPES = ("float16", "float32")
"""dtypes of the probability maps ``predict`` returns."""

DATASET_FORMATS = ("nnunet", "monai", "tiff")
"""Layouts of an exported fine-tuning dataset (``export_case(format=...)``, ``attnseg export --format``)."""

__all__ = ["DATASET_FORMATS", "DEVICES", "MODES", "PRECISIONS", "PROBABILITY_DTYPES"]

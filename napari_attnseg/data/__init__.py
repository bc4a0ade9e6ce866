"""Image I/O (TIFF, NIfTI, DICOM), fine-tuning dataset export and reading datasets back."""

from .io import can_read, image_format, input_stat, read_image, stem, write_image
from .volume import Volume

__all__ = ["Volume", "can_read", "image_format", "input_stat", "read_image", "stem", "write_image"]

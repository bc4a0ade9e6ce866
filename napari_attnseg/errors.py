"""Errors a user can act on. Each message names the file or layer and what to do about it."""

from __future__ import annotations


class AttnSegError(Exception):
    """Base class of every error napari-attnseg raises on purpose."""


class InputError(AttnSegError, ValueError):
    """An image, label array or parameter the core cannot use as given."""


class CheckpointError(AttnSegError):
    """A model file that is missing, corrupt, tampered with or of the wrong architecture."""


class DatasetError(AttnSegError):
    """An exported dataset that cannot be written to or read back."""


class Cancelled(AttnSegError):
    """Raised inside long work when the user pressed Cancel; nothing half-written is left."""

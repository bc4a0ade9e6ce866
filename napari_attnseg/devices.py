"""Device selection shared by inference, training, the CLI and the widgets."""

from __future__ import annotations

import torch

from .errors import InputError
from .options import DEVICES

DEVICE_CHOICES = DEVICES  # the name the CLI and the panels used before options.py


def available_devices() -> list[str]:
    """Devices usable on this machine, best first (``cpu`` is always last and always there)."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto"``/``"cpu"``/``"cuda"``/``"cuda:1"``/``"mps"`` into a usable ``torch.device``.

    ``auto`` picks CUDA, then Apple MPS, then the CPU. Asking for a device this machine lacks
    raises an ``InputError`` (a ``ValueError``) that lists the ones it has.
    """
    if isinstance(device, torch.device):
        device = str(device)
    name = (device or "auto").strip().lower()
    if name == "auto":
        return torch.device(available_devices()[0])
    kind = name.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise InputError(f"Unknown device {device!r}; choose one of {', '.join(DEVICE_CHOICES)}.")
    if kind != "cpu" and kind not in available_devices():
        raise InputError(
            f"Device {device!r} is not available on this machine; available: "
            f"{', '.join(['auto', *available_devices()])}."
        )
    return torch.device(name)

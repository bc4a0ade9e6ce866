from __future__ import annotations

import os

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture()
def tiny_checkpoint(tmp_path):
    """A small, untrained 2D attention U-Net saved as a checkpoint (no bundled weights needed)."""
    import torch

    from napari_attnseg import create_model, save_model
    from napari_attnseg.checkpoint import ModelCard

    def make(dims=2, arch="attention_unet", name="tiny", **config):
        torch.manual_seed(0)
        config = config or ({"features": (4, 8, 16, 32, 64)} if arch in ("attention_unet", "unet") else {})
        model = create_model(arch, spatial_dims=dims, **config)
        path = tmp_path / f"{name}-{dims}d.safetensors"
        save_model(model, path, ModelCard(arch="", config={}, name=f"{name}-{dims}d", description="test model",
                                          tile=[32] * dims))
        return path

    return make

"""One 2D plane: an image and its mask where one or both are a stack of that one plane (:func:`one_plane`), as the
CLI, napari's Correct tab and evaluate take them."""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def one_plane(image: np.ndarray, labels: np.ndarray, channel_axis: bool, spacing, axes, reviewed_slices, prediction,
              what: str = "the labels", volumes: bool = False):
    """Image and labels of one 2D plane where one or both of them are a stack of that one plane ((1, Y, X): a napari
    layer opened from a one-plane TIFF by napari's own reader, a mask saved from one) and the other is (Y, X) or that
    stack too: both squeezed to (Y, X), with the plane's spacing and axes, so the CLI (whose reader squeezes the plane)
    and napari export the same 2D case. Any 2D pair: a reviewed mark on its one plane (``--reviewed-slices 0``) is the
    whole image reviewed, marks on no plane of it are refused (nothing checked to export). ``volumes``: the dataset
    holds 3D cases, so an image and labels that are both a one-slice stack stay a one-slice volume. A prediction of
    the stacked plane (attnseg predict's mask of a one-slice NIfTI) follows the labels. As given otherwise."""
    spatial, shape = tuple(image.shape[1:] if channel_axis else image.shape), tuple(labels.shape)
    stacked_image = len(spatial) == 3 and spatial[0] == 1 and spatial[1:] in (shape, shape[1:])
    stacked_labels = len(shape) == 3 and shape[0] == 1 and shape[1:] in (spatial, spatial[1:])
    if volumes and stacked_image and stacked_labels and len(shape) == 3:  # (a one-slice volume into a 3D dataset)
        return image, labels, spacing, axes, reviewed_slices, prediction
    if not (stacked_image or stacked_labels):
        if len(spatial) == len(shape) == 2 and reviewed_slices is not None:  # a 2D pair: its one plane is plane 0
            reviewed_slices = _plane_reviewed(reviewed_slices, shape, what, "")
        return image, labels, spacing, axes, reviewed_slices, prediction
    if stacked_image:
        image = image[:, 0] if channel_axis else image[0]
    if stacked_labels:  # (and the prediction)
        labels = labels[0]
        prediction = prediction[0] if prediction is not None and np.shape(prediction) == shape else prediction
    if prediction is not None and np.ndim(prediction) == 3 and np.shape(prediction) == (1, *labels.shape):
        prediction = np.asarray(prediction)[0]  # (predict's mask of the stacked image, with a 2D mask)
    if reviewed_slices is not None and labels.ndim == 2:  # (a one-slice NIfTI image with its 2D mask too)
        reviewed_slices = _plane_reviewed(reviewed_slices, shape, what, "a stack of one slice, " if stacked_labels else "")
    spacing = list(spacing)[1:] if spacing is not None and len(spacing) == 3 else spacing
    axes = axes[1:] if axes and len(str(axes)) == 3 else axes
    return image, labels, spacing, axes, reviewed_slices, prediction


def _plane_reviewed(reviewed_slices, shape: tuple, what: str, stack: str) -> None:
    """A 2D image's reviewed marks: its one plane (0) marked is the image reviewed as a whole (None); marks on no plane
    of it are refused, as there is nothing checked to export."""
    if 0 not in {int(z) for z in reviewed_slices}:
        raise InputError(f"{what} is one 2D plane ({stack}shape {shape}), and it is not marked reviewed (reviewed "
                         f"slices {sorted(int(z) for z in reviewed_slices)}; its one plane is 0): there is nothing "
                         "checked to export. Mark the plane reviewed (napari: press R on it; attnseg export "
                         "--reviewed-slices 0), or give no reviewed slices to export the image as reviewed as a whole.")
    return None  # (the plane marked: reviewed as a whole)

"""Click to fix: whether a click on the canvas can land where the user sees it, and the label value of a new
object. Clicks in the 3D view hit no one voxel; with a 2D click model on a volume, a click on a rolled view (the
slider on y or x: a coronal or sagittal plane on screen) would segment the axial slice through the clicked voxel,
which is not the plane shown, so the change would appear as a line across the view (audit: 111 voxels written
on an axial slice nobody saw). Both are refused with the way back."""

from __future__ import annotations


def click_refusal(viewer, image, model_dims: int | None) -> str | None:
    """Why a click on the canvas is refused for ``image`` (None: it lands on the voxel under the cursor)."""
    dims = viewer.dims
    if dims.ndisplay == 3:  # a click on a rendering hits no one voxel (napari's slider is hidden)
        return "Clicks go on a slice: switch back to the 2D view (the 2D/3D button, lower left), then click."
    if image.ndim == 3 and model_dims == 2 and (dims.ndim - image.ndim) in dims.displayed:
        return (f"The 2D click model segments the axial slice under a click, and the view of {image.name} shows "
                "another plane (its axes were rolled): roll the axes back until the slider walks the axial slices "
                "(the 'Roll dimensions' button, lower left), then click.")
    return None


def new_object_value(class_value, mask) -> int:
    """The label value a click on background gives a new object: the Correct tab's *Class* when one is chosen,
    else the mask's label selected in napari's layer controls (what its brush paints), else 1."""
    if class_value:
        return int(class_value)
    selected = int(getattr(mask, "selected_label", 1) or 0)
    return selected if selected > 0 else 1

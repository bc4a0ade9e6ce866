"""Click to fix: whether a click on the canvas can land where the user sees it, and the label value of a new
object. Clicks in the 3D view hit no one voxel; with a 2D click model on a volume, a click on a rolled view (the
slider on y or x: a coronal or sagittal plane on screen) would segment the axial slice through the clicked voxel,
which is not the plane shown, so the change would appear as a line across the view (audit: 111 voxels written
on an axial slice nobody saw). Both are refused with the way back. And the Points layer that takes the clicks
(:func:`prompts_layer`), the same one through renames, and an empty mask for the clicks when the image has none
(:func:`mask_for_clicks`). Layers made on an image's pixel grid (a run's mask, probability and heatmaps, the prompt
attention) follow a placement set on the image later (:func:`follow`)."""

from __future__ import annotations

import weakref

import numpy as np

POSITIVE, NEGATIVE = "#30d060", "#ff4040"
PROMPTS_KEY = "attnseg_prompts"  # a prompts layer's metadata: {"image": the image layer's unique_id, "name": given}


def click_refusal(viewer, image, model_dims: int | None) -> str | None:
    """Why a click on the canvas is refused for ``image`` (None: it lands on the voxel under the cursor)."""
    if (why := layer_refusal(image)) is not None:  # (the image chosen again while the mode was on)
        return why
    dims = viewer.dims
    if dims.ndisplay == 3:  # a click on a rendering hits no one voxel (napari's slider is hidden)
        return "Clicks go on a slice: switch back to the 2D view (the 2D/3D button, lower left), then click."
    if image.ndim == 3 and model_dims == 2 and (dims.ndim - image.ndim) in dims.displayed:
        return (f"The 2D click model segments the axial slice under a click, and the view of {image.name} shows "
                "another plane (its axes were rolled): roll the axes back until the slider walks the axial slices "
                "(the 'Roll dimensions' button, lower left), then click.")
    return None


def layer_refusal(image) -> str | None:
    """Why clicks cannot run on ``image`` at all, as the Segment tab says it (:func:`._common.layer_hint`): a layer
    of 4 dimensions (an ImageJ hyperstack z-c-y-x) or a stack of channels (c-y-x, as the TIFF or the axis labels
    say). Click to fix had taken a 2-channel c-y-x TIFF as a volume of 2 slices and segmented the other stain's
    plane, and on a z-c-y-x hyperstack said "Click an object" and then failed every click with a CLI hint."""
    from ._common import channel_stack_message, dims_message

    if getattr(image, "rgb", False):
        return None
    why = dims_message(image) or channel_stack_message(image)
    return None if why is None else f"Click to fix: {why}"


def new_object_value(mask) -> int:
    """The label value a new object is written with: the mask's label selected in napari's layer controls (what its
    brush paints; napari's *new label*, key M, selects the next free one), else 1. The helpers' *Class* chosen had
    come first, and nothing in the panel said which value a click would write."""
    selected = int(getattr(mask, "selected_label", 1) or 0)
    return selected if selected > 0 else 1


def holds_value(mask, value: int) -> bool | None:
    """Whether ``mask`` holds ``value`` anywhere (None: a lazy array, not read on the GUI thread)."""
    data = mask.data
    if not isinstance(data, np.ndarray):
        return None
    return bool(np.any(data == value))


def value_note(mask, object_value: int | None, over: bool) -> str:
    """The panel's line saying which label value the clicks write: the object's, or a new object's (``over``: written
    over a labelled region clicked, :meth:`.prompt_mode.PromptMode.writes_over`)."""
    if mask is None:
        return ""
    if object_value is not None:
        return f"This object: label {object_value} in '{mask.name}'."
    value = new_object_value(mask)
    text = f"New object: label {value} (the mask's selected label; M in its layer controls picks a new one)"
    return text + (": a click on a labelled region writes it over that region (a tumour over tissue)." if over
                   else "; a click on an object corrects that object.")


def grey_for_clicks(corr, image):
    """The image layer that takes the clicks, or why none does (a str, already shown to the user): ``image``, or for
    an RGB layer its grey layer (a grey or one-colour picture's, a bright-field slide's hematoxylin;
    :func:`._common.grey_layer_of`), made the Correct tab's image; refused for a layer that is no image or volume
    (:func:`layer_refusal`). The slide itself had got the fit warning for a bright image and every click refused
    with "No Labels layer". On the GUI thread: a picture of more than ``PREVIEW_VOXELS`` pixels has its grey made on a
    worker first (:mod:`.prompt_grey`)."""
    from ._common import grey_layer_of, notify_error

    why = "Prompt mode needs an image layer: choose one in the Image field above." if image is None \
        else layer_refusal(image)
    if why is not None:
        notify_error(why)
        return why
    if not image.rgb:
        return image
    grey = grey_layer_of(corr.viewer, image)
    if grey is None:
        return no_grey_message(image.name)
    corr.refresh()
    corr.image_combo.value = grey.name
    return grey


def no_grey_message(name: str) -> str:
    """The status of the mode refused for an RGB layer holding no one grey image (the reason shown as an error)."""
    return f"Layer {name!r} holds no one grey image (see the message): split its colours, then pick one."


def prompts_layer(viewer, image, current=None):
    """The Points layer that takes the clicks on ``image``, emptied: the mode's layer for that image while it is still
    in the viewer, under whatever name the user gave it (the name the mode gave it follows an image rename); else
    '<image> prompts', added, or reused when the mode made it or it holds no points (a user's own layer of that
    name, or one of another type, is left as it is: the new one gets napari's next free name). Renaming the layer and ticking the mode
    again had added a second '<image> prompts' and left the renamed one unused."""
    from napari.layers import Points

    mask_for_clicks(viewer, image)
    name = f"{image.name} prompts"
    mine = [ly for ly in viewer.layers if isinstance(ly, Points) and ly.ndim == image.ndim
            and (ly.metadata.get(PROMPTS_KEY) or {}).get("image") == image.unique_id]
    layer = current if current in mine else next(iter(mine), None)
    other = viewer.layers[name] if name in viewer.layers else None
    if layer is None and isinstance(other, Points) and other.ndim == image.ndim \
            and (other.metadata.get(PROMPTS_KEY) or not len(other.data)):
        # the mode's layer of an image opened again (another unique_id), or an empty one of that name: reused in place
        # (through upsert_layer, whose ndim test read a Points layer's (N, D) data as 2D, it was removed and added
        # again, and its removal turned the mode off while ticking it: the box unticked, clicks still taken)
        layer = other
        layer.metadata[PROMPTS_KEY] = {**(other.metadata.get(PROMPTS_KEY) or {}), "name": name}
    if layer is not None:
        given = layer.metadata[PROMPTS_KEY].get("name")
        if layer.name == given and name not in viewer.layers:  # (a name the user typed stays)
            layer.name = name
        layer.data = np.empty((0, image.ndim))
        place_like(layer, image)
    else:
        kwargs = {"name": name, "size": 8, "face_color": POSITIVE, "border_color": "white", **placement(image)}
        layer = viewer.add_points(np.empty((0, image.ndim)), **kwargs)  # (a user's layer of that name stays)
    given = layer.name if layer.name == name else (layer.metadata.get(PROMPTS_KEY) or {}).get("name", layer.name)
    layer.metadata[PROMPTS_KEY] = {"image": image.unique_id, "name": given}
    return layer


PLACEMENT_EVENTS = ("scale", "translate", "rotate", "shear", "affine", "units", "axis_labels")  # (events that move a layer)


def placement(image) -> dict:
    """The keyword arguments that put a layer in ``image``'s pixel coordinates where ``image`` lies: its whole placement
    (a rotate or shear folded into the affine, :func:`._common.placement_of`), units included (a Points layer in pixels
    beside a z-stack in micron made napari warn "Inconsistent units across layers" and stop rendering with units)."""
    from ._common import placement_of

    place = placement_of(image).compose((1.0,) * image.ndim, (0.0,) * image.ndim)
    place.setdefault("affine", np.eye(image.ndim + 1))  # (an affine set before and taken off the image since)
    return place


def place_like(layer, image) -> None:
    """Move ``layer`` (the prompts layer, in ``image``'s pixel coordinates) where ``image`` lies now."""
    for key, value in placement(image).items():
        setattr(layer, key, value)


FOLLOW_KEY = "attnseg_follows"  # {"image": unique_id, "scale", "translate": the layer's grid in the image's pixels}
_FOLLOWERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # image layer -> WeakSet of the layers on its grid


def follow(layer, image, scale, translate) -> None:
    """Place ``layer`` (its grid: ``scale`` and ``translate`` in ``image``'s pixels) where ``image`` lies, now and
    whenever the image's scale, translate, rotate, shear, affine or units are set later. A run's mask and heatmaps
    (and the prompt attention) kept the placement the image had when they were made: the image's pixel size typed
    after Segment left them at twice its size, and every click was then refused (the mask lay elsewhere)."""
    if layer.ndim != image.ndim:  # (a result of another dimensionality is not on this grid)
        return
    layer.metadata[FOLLOW_KEY] = {"image": image.unique_id, "scale": [float(v) for v in scale],
                                  "translate": [float(v) for v in translate]}
    _FOLLOWERS.setdefault(image, weakref.WeakSet()).add(layer)
    for name in PLACEMENT_EVENTS:
        if (emitter := getattr(image.events, name, None)) is not None:
            emitter.connect(_follow_image)  # (napari connects a callback once)
    _place_on(layer, image)


def _place_on(layer, image) -> None:
    from ._common import placement_of

    grid = layer.metadata.get(FOLLOW_KEY) or {}
    if grid.get("image") != image.unique_id:  # (another run's layer of that name now, on another image)
        return
    place = placement_of(image).compose(grid["scale"], grid["translate"])
    place.setdefault("affine", np.eye(image.ndim + 1))  # (an affine taken off the image since)
    for key, value in place.items():
        setattr(layer, key, value)


def _follow_image(event=None) -> None:
    image = getattr(event, "source", None)
    for layer in list(_FOLLOWERS.get(image, ())) if image is not None else ():
        _place_on(layer, image)


def _world(layer) -> np.ndarray:
    """``layer``'s pixel -> world matrix (homogeneous)."""
    from ._common import placement_of

    place, n = placement_of(layer), layer.ndim
    inner = np.eye(n + 1)
    inner[:n, :n], inner[:n, n] = np.diag(place.scale), place.translate
    return (np.eye(n + 1) if place.affine is None else np.asarray(place.affine, float)) @ inner


def pair_refusal(mask, image) -> str | None:
    """Why clicks on ``image`` cannot be written into ``mask`` (None: they can): another shape, or another place in
    the viewer (the image's scale typed after Segment, the mask left as it was): a click was written at the image's
    pixel under the cursor, which the mask shows somewhere else."""
    if np.shape(mask.data) != np.shape(image.data)[-mask.ndim:] or mask.ndim != image.ndim:
        return (f"Mask {mask.name} ({np.shape(mask.data)}) and image {image.name} ({np.shape(image.data)}) differ in "
                "shape; pick the mask that belongs to the image.")
    if np.allclose(_world(mask), _world(image), rtol=1e-5, atol=1e-6):
        return None

    def shown(values) -> str:
        return str(tuple(float(f"{float(v):.6g}") for v in values))

    moved = [a for a in ("scale", "translate") if not np.allclose(getattr(mask, a), getattr(image, a))]
    moved += [a for a in ("rotate", "shear") if not np.allclose(getattr(mask, a), getattr(image, a))]
    moved += ["affine"] if not np.allclose(mask.affine.affine_matrix, image.affine.affine_matrix) else []
    said = "; ".join(f"{a} {shown(getattr(mask, a))} vs {shown(getattr(image, a))}" if a in ("scale", "translate")
                     else f"{a} differs" for a in moved)
    fix = "; ".join(f"viewer.layers[{mask.name!r}].{a} = viewer.layers[{image.name!r}].{a}" for a in moved)
    return (f"Nothing written: the mask '{mask.name}' and the image '{image.name}' lie at different places in the "
            f"viewer ({said}), so a click would be written where the mask shows it elsewhere. Give the mask the "
            f"image's placement (in napari's console, Window > Console: {fix}), or pick the mask that belongs to the "
            "image.")


def mask_for_clicks(viewer, image):
    """An empty '<image> mask' on the image's grid, added when no Labels layer of the image's shape is open (None when
    one is). Click to fix on a fresh image (no Segment run: a scan the bundled models were never trained on) had
    said "Click an object" and then refused every click with "No Labels layer"."""
    from napari.layers import Labels

    from ..layers import data_hash
    from ._common import layer_array, placement_of
    from .sample_data import REFERENCE_KEY

    shape = tuple(np.shape(layer_array(image)))  # (a pyramid's full-resolution level)
    if image.ndim < 2 or getattr(image, "rgb", False) or \
            any(isinstance(ly, Labels) and tuple(np.shape(layer_array(ly))) == shape
                and not ly.metadata.get(REFERENCE_KEY) for ly in viewer.layers):
        return None
    metadata = {k: image.metadata[k] for k in ("affine", "spacing", "source_path", "nifti") if k in image.metadata}
    metadata["attnseg_source_uid"] = image.unique_id  # (the Correct tab pairs the mask with this image)
    name = f"{image.name} mask"
    if name in viewer.layers:
        return None
    data = np.zeros(shape, np.uint8)
    metadata["attnseg_hash"] = data_hash(data)  # a Segment run replaces it while no click changed it, else asks
    mask = viewer.add_labels(data, name=name, metadata=metadata,
                             **placement_of(image).compose((1.0,) * image.ndim, (0.0,) * image.ndim))
    follow(mask, image, (1.0,) * image.ndim, (0.0,) * image.ndim)
    return mask

"""What a user picks of a multi-dimensional file (an ImageJ hyperstack, an OME-TIFF of several channels): the picked
channel's own name (an export's default channel name in dataset.json), and one refusal of a time-lapse of volumes
that names every choice it needs (channel and time point), where the channel and the time axis were refused in turn."""

from __future__ import annotations

import re

_UNNAMED = re.compile(r"c\d+")  # the readers' name of a channel without one (c0, c1...)


def own_channel_names(meta: dict, stacked: bool = False) -> list[str] | None:
    """The names of the channels of an image as read (``meta``: the reader's ``channel_names``, the OME channel names,
    and the ``channel`` picked by ``--channel K``): the picked channel's name (``["DAPI"]``), every channel's when they
    are exported together (``stacked``), a lone channel's; a napari layer's (``channel``, its name, with
    ``channel_index``: one layer per channel of the file); None when they are not named (``c1``) or none was picked."""
    picked = meta.get("channel")
    if isinstance(picked, str) and isinstance(meta.get("channel_index"), int):  # (napari: '<name> [DAPI]')
        return None if _UNNAMED.fullmatch(picked.strip()) or not picked.strip() else [picked.strip()]
    names = meta.get("channel_names")
    if not isinstance(names, (list, tuple)) or not names:
        return None
    names = [str(n).strip() for n in names]
    if stacked or len(names) == 1:
        chosen = names
    elif isinstance(picked, int) and not isinstance(picked, bool) and 0 <= picked < len(names):
        chosen = [names[picked]]
    else:
        return None
    return None if any(not n or _UNNAMED.fullmatch(n) for n in chosen) else chosen


def time_lapse_of_volumes(axes: str, shape, src, channel: int | None = None,
                          names: list[str] | None = None) -> str | None:
    """The refusal of an image whose axes (tifffile's: an ImageJ TZCYX hyperstack, an OME TCZYX) hold time points of
    volumes, which no model segments and no dataset case holds: one message naming the file and what to choose, the
    channel too when it has several and ``channel`` (``--channel K``) is None, and how to get that one volume as a
    file of its own. None for any other image (a volume, a time-lapse of 2D images, channels of one volume)."""
    axes, shape = str(axes or ""), tuple(int(n) for n in shape)
    if len(axes) != len(shape) or "T" not in axes or "Z" not in axes or shape[axes.index("Z")] < 2 \
            or shape[axes.index("T")] < 2:
        return None
    t = shape[axes.index("T")]
    c = shape[axes.index("C")] if "C" in axes else 1
    volume = " x ".join(str(n) for a, n in zip(axes, shape) if a in "ZYX")
    index = [("t" if a == "T" else "k" if a == "C" and channel is None else str(channel) if a == "C" else ":")
             for a in axes if a not in "YXS"]
    while index and index[-1] == ":":
        index.pop()
    channels = ""
    if c > 1 and channel is None:
        listed = [f"{k} {n}" for k, n in enumerate(names or [])] if names and len(names) == c else []
        channels = f"; the channel k is one of 0 to {c - 1}{' (' + ', '.join(listed) + ')' if listed else ''}"
    which = f"the time point t (0 to {t - 1})" + (" and the channel k" if c > 1 and channel is None else
                                                  f" of channel {channel} (--channel {channel})" if c > 1 else "")
    return (f"{src} is a time-lapse of volumes{f' in {c} channels' if c > 1 else ''} (axes {axes}: {t} time points of "
            f"{volume}); a model segments, and a dataset case holds, one 2D image or volume of one channel at a time, "
            f"so choose {which}, and save that volume as a file of its own to segment or export (Fiji: Image > "
            f"Duplicate..., tick 'Duplicate hyperstack', one frame{' and one channel' if c > 1 else ''}: the pixel "
            f"size is kept; Python: tifffile.imread(path)[{', '.join(index)}]){channels}. Give that file instead"
            f"{' (without --channel)' if c > 1 else ''}.")


def channel_last(shape, axes: str = "", dims: int | None = None) -> bool:
    """A 2D model's image stored (y, x, C) without axis names saying so (tifffile's QYX for numpy's channels-last
    order): a last axis of at most 4, much smaller than the other two."""
    shape = tuple(int(n) for n in shape)
    named = len(axes) == len(shape) and any(a in "CS" for a in axes)
    return dims == 2 and len(shape) == 3 and not named and shape[-1] <= 4 and shape[-1] * 4 <= min(shape[:-1])


def last_axis_channel(vol, channel: int | None, dims: int | None, src):
    """Channel ``channel`` (``--channel K``) of a channel-last image (:func:`channel_last`) as its own image, the
    Volume ``vol`` without that axis; None when ``vol`` is no such image or no channel is asked for (the model check
    then refuses it, saying to give --channel K: that advice must work)."""
    import numpy as np

    from ..errors import InputError
    from .volume import Volume

    shape = np.shape(vol.data)
    if channel is None or not channel_last(shape, str(vol.meta.get("axes") or ""), dims):
        return None
    if not 0 <= int(channel) < shape[-1]:
        raise InputError(f"{src} has {shape[-1]} channels on its last axis (shape {tuple(shape)}); --channel is 0 to "
                         f"{shape[-1] - 1}, not {channel}.")
    spacing = tuple(vol.spacing[:2]) if len(vol.spacing) == 3 else vol.spacing
    return Volume(np.take(np.asarray(vol.data), int(channel), axis=-1), spacing, vol.affine,
                  {**vol.meta, "axes": "YX", "channel": int(channel)})

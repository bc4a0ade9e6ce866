"""The default split by case of a dataset holding frames of a time-lapse: a movie's frames stay on one side.

``attnseg export --format nnunet|monai`` (and the napari Correct panel's export) writes each frame of a time-lapse as
a 2D case of its own, ``<case>_t000``, ``<case>_t001``... Neighbouring frames look alike, so a split drawing cases
one by one trained on ``case_0000_t002`` and validated on ``case_0000_t000``: a validation Dice of frames the model
nearly saw. Cases whose ids are ``<base>_tNNN`` with another case of the same ``<base>`` are one movie's frames
(:func:`movie_groups`); so are the frames of one movie exported in two rounds, the second as a new case
(``case_0000_t000``..., ``case_0003_t003``...): known by the movie's sha256 that the export records for each frame
(the manifest's ``movie_sha256``: two movies of one file name, exp1/movie.tif and exp2/movie.tif, are two), or in a
dataset exported before it, by their source (``source_name``, ``"<file> (frame t)"``) naming frames of one file of
one frame size. The split draws whole movies (:func:`split_by_movie`). A dataset holding one
movie only validates on a block of consecutive frames at one end, and says that its validation is optimistic; so does
the one movie holding foreground among movies without (the others stay whole).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import DatasetError

FRAME = re.compile(r"^(?P<base>.+)_t(?P<t>\d{3,})$")  # export_plan.frame_ids: <case>_t000
SOURCE_FRAME = re.compile(r"^(?P<file>.+) \(frame (?P<t>\d+)\)$")  # export.py: a frame's source_name


class CaseIds(list):
    """Case ids carrying each case's source (``sources``: the manifest's ``source_name``, None when unknown), so the
    split finds the frames of one movie exported in several rounds (:func:`movie_groups`), its axes where its
    file records them (``axes``, :func:`case_axes`: ``TYX``, a time-lapse kept as one case, :func:`time_lapse`), and
    a frame's movie (``movies``: the manifest's ``movie_sha256``, :func:`case_movies`; by default those that
    :func:`case_axes` read with the axes)."""

    def __init__(self, ids: list[str], sources: dict[str, str | None], axes: dict[str, str | None] | None = None,
                 movies: dict[str, str] | None = None):
        super().__init__(ids)
        self.sources = [sources.get(cid) for cid in ids]
        self.axes = [(axes or {}).get(cid) for cid in ids]
        movies = getattr(axes, "movies", None) if movies is None else movies
        self.movies = [(movies or {}).get(cid) for cid in ids]


class CaseFacts(dict):
    """:func:`case_axes`'s answer: each case's axes, and (``movies``) each frame's movie (:func:`case_movies`)."""

    def __init__(self, axes: dict[str, str | None], movies: dict[str, str]):
        super().__init__(axes)
        self.movies = movies


def case_axes(cases) -> dict[str, str | None]:
    """The axes each case's TIFF label (else image) file records, read from its header (``TYX``: a time-lapse the
    TIFF layout keeps as one t, y, x case); None for other files. Also (a :class:`CaseFacts`) the frames' movies."""
    from ..data.tiff import tiff_axes

    found: dict[str, str | None] = {}
    for case in cases:
        paths = [p for p in (case.label_path, *case.image_paths[:1]) if str(p).lower().endswith((".tif", ".tiff"))]
        found[case.case_id] = next((a for p in paths if (a := tiff_axes(p))), None)
    return CaseFacts(found, case_movies(cases))


def case_movies(cases) -> dict[str, str]:
    """Each frame case's movie: the ``movie_sha256`` its manifest record holds (``export_case`` hashes the whole
    stack of a time-lapse exported one 2D case per frame, so every round of one movie has the same, another movie of
    the same file name another). None recorded (a dataset exported before, a foreign one): the case is left out."""
    from ..data.manifest import read_manifest

    found: dict[str, str] = {}
    for root in dict.fromkeys(Path(case.label_path).parent.parent for case in cases):  # (labelsTr/, labels/)
        try:
            manifest = read_manifest(root) or {}
        except (DatasetError, OSError):
            continue
        found.update({c["case_id"]: str(c["movie_sha256"]) for c in manifest.get("cases", [])
                      if isinstance(c, dict) and c.get("movie_sha256") and "case_id" in c})
    return found


def time_lapse(case_ids: list[str], i: int) -> bool:
    """Whether case ``i`` is a time-lapse held as one case (its first axis the frames: ``case_ids.axes``)."""
    axes = getattr(case_ids, "axes", None)
    return bool(axes) and str(axes[i] or "").startswith("T")


def frames_note(case_id: str, block: tuple[int, int], n_frames: int) -> str:
    """The split's words for one time-lapse case validated on a ``block`` (start, stop) of its frames."""
    a, b = block
    held = f"frame {a}" if b == a + 1 else f"frames {a}-{b - 1}"
    return (f"{case_id} is a time-lapse ({n_frames} frames in one t, y, x case): validation on the block of consecutive "
            f"{held}, the others train (not frames spread between training ones); frames next to each other look "
            "alike, so the validation Dice is optimistic (export a second movie to validate on another one)")


def movie_groups(case_ids: list[str], shapes: list[tuple] | None = None) -> list[list[int]] | None:
    """The cases (indices) in groups: the frames of one movie together, in frame order; every other case alone.
    A frame is known by its movie (``case_ids.movies``, :class:`CaseIds`: the whole stack's sha256 recorded at export,
    shared by the rounds of one movie only), else by its source (``case_ids.sources``: ``"<file> (frame t)"``, with
    ``shapes`` its frame size: a dataset exported before the movie was recorded), else by its case id
    (``<base>_tNNN``). None when no two cases are frames of one movie (the split draws cases one by one)."""
    sources = getattr(case_ids, "sources", None) or [None] * len(case_ids)
    movies = getattr(case_ids, "movies", None) or [None] * len(case_ids)
    keys: dict[tuple, list[tuple[int, int]]] = {}
    files: dict[tuple, set] = {}  # a movie's (file, frame size): where a round exported before movie_sha256 goes
    for i, cid in enumerate(case_ids):
        found = FRAME.match(cid)
        source = SOURCE_FRAME.match(str(sources[i] or "")) if found else None
        where = (source["file"], tuple(shapes[i]) if shapes else ()) if source else None
        if source and movies[i]:  # the movie's identity recorded at export: its rounds share it, another movie not
            key, t = ("sha", movies[i]), int(source["t"])
            files.setdefault(key, set()).add(where)
        elif source:  # (a movie's second round exported as a new case: another base, the same source)
            key, t = ("source", *where), int(source["t"])
        else:
            key, t = (("movie", found["base"]) if found else ("case", cid)), int(found["t"]) if found else 0
        keys.setdefault(key, []).append((t, i))
    for key in [k for k in keys if k[0] == "source"]:  # a round exported before movie_sha256 was recorded: with the
        same = [m for m, where in files.items() if key[1:] in where]  # one recorded movie of its file and frame size
        if len(same) == 1 and not {t for t, _ in keys[key]} & {t for t, _ in keys[same[0]]}:
            keys[same[0]] += keys.pop(key)
    for key in [k for k in keys if k[0] == "source"]:  # a frame twice: two movies of one file name (exp1/movie.tif
        if len({t for t, _ in keys[key]}) < len(keys[key]):  # and exp2/movie.tif), not rounds of one: by case id
            for _, i in keys.pop(key):
                found = FRAME.match(case_ids[i])
                keys.setdefault(("movie", found["base"]), []).append((int(found["t"]), i))
    groups = []
    for key, members in keys.items():
        movie = key[0] != "case" and len(members) > 1  # (one case named like a frame: a case of its own)
        groups.append(([i for _, i in sorted(members)], movie))
    if not any(movie for _, movie in groups):
        return None
    return [g for g, _ in groups]


def movie_name(case_ids: list[str], group: list[int]) -> str:
    """A movie's name in the split's words: its case id base (``case_0000``); its file and the bases of its rounds
    (``movie.tif (case_0000 + case_0003)``) when it was exported as several cases."""
    bases = list(dict.fromkeys((m["base"] if (m := FRAME.match(case_ids[i])) else case_ids[i]) for i in group))
    sources = getattr(case_ids, "sources", None)
    found = SOURCE_FRAME.match(str(sources[group[0]] or "")) if sources and len(bases) > 1 else None
    return f"{found['file']} ({' + '.join(bases)})" if found else " + ".join(bases)


def split_by_movie(labels: list[np.ndarray], case_ids: list[str], groups: list[list[int]], has_fg: list[bool],
                   val_fraction: float, seed: int):
    """The default split by case with each group of :func:`movie_groups` on one side: ``(train, val, warnings)``
    as case indices. Several groups: whole groups drawn (seeded) for validation, about ``val_fraction`` of the cases,
    one with foreground when another with foreground is left to train on. One group holding all the foreground: it
    trains, and, a movie of 2 or more foreground frames, validates on its latest block of consecutive frames too
    (else the validation measured no foreground, or training saw none), said in the warning. One movie: the latest
    block of consecutive frames holding some, not all, of the foreground frames."""
    n = len(labels)
    target = min(n - 1, max(1, int(round(n * val_fraction))))
    if len(groups) == 1:
        return _one_movie(groups[0], case_ids, has_fg, target)
    order = [groups[k] for k in np.random.default_rng(seed).permutation(len(groups)).tolist()]
    val: list[list[int]] = []
    for g in order:  # whole groups that fit in the validation's share (none fits: the smallest group)
        if sum(map(len, val)) >= target or len(val) == len(groups) - 1:
            break
        if sum(map(len, val)) + len(g) <= target:
            val.append(g)
    if not val:
        val = [min(order, key=len)]
    fg_groups = [g for g in order if any(has_fg[i] for i in g)]
    if not any(has_fg[i] for g in val for i in g) and len(fg_groups) >= 2:
        val = [min(fg_groups, key=len)]  # (the drawn validation holds no foreground)
    split, block = None, None
    if len(fg_groups) == 1:  # one group holds all the foreground: both sides need some of it
        only = fg_groups[0]
        val = [g for g in val if g is not only] or [min((g for g in order if g is not only), key=len)]
        if len(only) > 1 and sum(has_fg[i] for i in only) >= 2:  # its latest frames validate, the others train
            n_block = min(len(only) - 1, max(1, int(round(len(only) * val_fraction))))
            _, block, _ = _one_movie(only, case_ids, has_fg, n_block)
            split = only
    held = sorted([i for g in val for i in g] + (block or []))
    train = sorted(set(range(n)) - set(held))
    movies = [g for g in groups if len(g) > 1 and g is not split]
    said = [f"the {len(g)} frames of the time-lapse {movie_name(case_ids, g)} are all in "
            f"{'validation' if g[0] in held else 'training'}" for g in movies]
    if split is not None:
        said.append(f"the time-lapse {movie_name(case_ids, split)} is the only one with foreground, so "
                    f"it is split: its block of consecutive frames {_block(case_ids, [i for i in split if i in block])} validates, its other "
                    f"{len(split) - len(block)} frames train (validating on frames next to training ones makes the "
                    "validation Dice optimistic, but without them it would measure no foreground: export a second "
                    "movie with foreground to validate on a movie of its own)")
    return train, held, ["frames of one time-lapse look alike, so each movie is on one side of the split: "
                         + "; ".join(said)]


def _block(case_ids: list[str], held: list[int]) -> str:
    first, last = case_ids[held[0]], case_ids[held[-1]]
    return first if first == last else f"{first} .. {last}"


def _one_movie(frames: list[int], case_ids: list[str], has_fg: list[bool], n_val: int):
    fg = [i for i in frames if has_fg[i]]
    windows = []  # (start, stop) positions in ``frames``, the latest first
    for start in range(len(frames) - n_val, -1, -1):
        inside = sum(1 for i in frames[start:start + n_val] if has_fg[i])
        windows.append((start, start + n_val, inside))
    good = ([w for w in windows if 0 < w[2] < len(fg)] or [w for w in windows if w[2] == 0] or windows)[0]
    window = frames[good[0]:good[1]]  # (in frame order: a movie's rounds may interleave the case order)
    held, train = sorted(window), sorted(set(frames) - set(window))
    base, block = movie_name(case_ids, frames), _block(case_ids, window)
    return train, held, [f"every case is a frame of the time-lapse {base}: validation on the block of consecutive "
                         f"frames {block}, the others train; frames next to each other look alike, so the validation "
                         "Dice is optimistic (export a second movie to validate on another one)"]

"""The plugin as napari's preferred reader of the formats napari's builtins claim too (``on_activate``).

napari's builtin reader also claims ``*.nii``, ``*.nii.gz``, ``*.mha``, ``*.nrrd``, ``*.dcm``, ``*.dicom`` and ``*.ome.tif``
(without the geometry, the Hounsfield scaling, the series sorting or the pixel size), so napari would ask which reader to
use for each of them. On first use the plugin records itself as the preferred reader of those patterns in napari's
settings, where the user has not chosen one (:func:`prefer_plugin_readers`). napari matches these preferences
case-sensitively (npe2 matches the readers' own patterns in any case), so each is recorded in lower case, upper case
(SCAN.NII.GZ) and in any case (``*.[nN][iI][iI]``: Scan.Nii, scan.Nii.Gz were still asked about).

Folders: npe2 offers a folder to every reader that accepts directories (it does not match folder
names), so with this plugin installed napari would ask which reader to use for any folder. On first
use the plugin records itself for folders (``*/``) and napari for Zarr stores (``*.zarr/``), again only
where the user has not chosen; its folder reader opens DICOM series itself and hands every other folder
to napari's own reader (:func:`.io_hooks.get_dicom_reader`), so a folder of TIFFs opens exactly as without the
plugin, with no question. Before the plugin's first use napari still asks once for a folder.
"""

from __future__ import annotations

PLUGIN = "napari-attnseg"
# napari's builtins claim these too (.mha/.nrrd only with itk)
_CLAIMED = ("*.nii", "*.nii.gz", "*.mha", "*.mhd", "*.nrrd", "*.nhdr", "*.dcm", "*.dicom", "*.ima", "*.ome.tif", "*.ome.tiff")


def any_case(pattern: str) -> str:
    """``pattern`` matching its name in any case, for napari's case-sensitive fnmatch: ``*.[nN][iI][iI]``."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in pattern)


PREFERRED_PATTERNS = (*_CLAIMED, *(p.upper() for p in _CLAIMED), *(any_case(p) for p in _CLAIMED))

# every folder comes to this plugin's folder reader (DICOM series; any other folder is handed to napari's
# own reader), so napari does not ask for each folder; a Zarr store (a folder named *.zarr) stays napari's
FOLDER_PATTERN = "*/"
NAPARI_PATTERNS = ("*.zarr/",)


def prefer_plugin_readers(settings=None) -> list[str]:
    """Make this plugin napari's reader for NIfTI and DICOM files (and napari's own for Zarr folders),
    never overriding a user's choice: where the user chose another reader for a pattern in one case (``*.nii.gz``),
    its any-case pattern is not added (it would take ``Scan.Nii.Gz`` from that reader).

    Returns the patterns added to ``settings.plugins.extension2reader``.
    """
    if settings is None:
        from napari.settings import get_settings

        settings = get_settings()
    current = dict(settings.plugins.extension2reader)
    wanted = {**dict.fromkeys((*PREFERRED_PATTERNS, FOLDER_PATTERN), PLUGIN),
              **dict.fromkeys(NAPARI_PATTERNS, "napari")}
    for pattern in _CLAIMED:
        if any(current.get(p, PLUGIN) != PLUGIN for p in (pattern, pattern.upper(), any_case(pattern))):
            wanted.pop(any_case(pattern))
    added = {p: r for p, r in wanted.items() if p not in current}
    if added:
        settings.plugins.extension2reader = {**current, **added}
    return list(added)


def activate(context=None) -> None:
    """npe2 ``on_activate``: runs once per session, when the plugin is first used."""
    try:
        prefer_plugin_readers()
    except Exception:  # settings unavailable (e.g. read-only): napari keeps asking, nothing breaks
        pass

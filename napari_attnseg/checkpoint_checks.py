"""Why a file or folder someone hands over is not a napari-attnseg checkpoint, told without unpickling anything:
a PyTorch pickle, a TorchScript archive, a MONAI bundle, a zip still packed, a folder that wraps the run
folder, a model of the user models folder that is gone since it was listed. ``checkpoint.py`` calls these for
its messages."""

from __future__ import annotations

import zipfile
from pathlib import Path

ACCEPTED = ("napari-attnseg runs its own checkpoints only: a .safetensors file with its card (what save_model, "
            "attnseg train and attnseg finetune write), or the folder train/finetune wrote (its best.safetensors)")
_PICKLE = ("{path} is a PyTorch pickle (torch.save), not a safetensors file. napari-attnseg never unpickles files: "
           "unpickling can run any code stored in them. If you trust the file, convert it once in your own Python: "
           "build the model with napari_attnseg.create_model, load the state_dict read with torch.load "
           "(weights_only=True) into it, and save it with napari_attnseg.save_model(net, 'model.safetensors', "
           "card={{'classes': [...]}}) (docs/cli.md, 'Converting a PyTorch checkpoint').")
_OTHER_TOOL = ("It holds another tool's network, which napari-attnseg cannot run; {accepted}. Run it with that tool, "
               "or train or fine-tune a model here on your data (attnseg train / attnseg finetune).")


def _zip_names(path: Path) -> list[str] | None:
    """The names in a zip archive (its directory only), or None when ``path`` is not one."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return z.namelist()
    except (OSError, zipfile.BadZipFile):
        pass
    return None


def _is_bundle(folder: Path) -> bool:
    """A MONAI bundle: ``configs/`` with its metadata or inference config, usually ``models/model.pt|ts``."""
    configs = folder / "configs"
    return configs.is_dir() and any((configs / f"{n}.{e}").is_file()
                                    for n in ("metadata", "inference") for e in ("json", "yaml", "yml"))


def foreign_file_message(path: Path) -> str | None:
    """Why ``path`` (not a readable safetensors file) is another kind of model file, or None when it is not one
    (then it is called damaged). Nothing is unpickled: a zip archive's directory and the first byte are read."""
    names = _zip_names(path)
    bundle = next((p for p in path.parents[:2] if _is_bundle(p)), None)
    if bundle is not None:
        return (f"{path} belongs to a MONAI bundle ({bundle}: configs/, models/), not a napari-attnseg model. "
                + _OTHER_TOOL.format(accepted=ACCEPTED))
    if names is not None and any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        return (f"{path} is a TorchScript model (torch.jit.save), not a safetensors file; napari-attnseg never loads "
                f"TorchScript or pickles (loading one can run code stored in it), and {ACCEPTED}. A TorchScript of "
                "another tool's network (MONAI, nnU-Net, ...) does not run here. If it is a napari-attnseg model and "
                "you trust the file, convert it once in your own Python: net = napari_attnseg.create_model(ARCH, ...) "
                "as it was trained; net.load_state_dict(torch.jit.load(PATH).state_dict()); napari_attnseg."
                "save_model(net, 'model.safetensors', card={'classes': [...]}) (docs/cli.md, 'Converting a PyTorch "
                "checkpoint').")
    if names is not None and any(n.endswith("data.pkl") for n in names):
        return _PICKLE.format(path=path)
    if names is not None:
        inside = [n for n in names if n.endswith(".safetensors")][:3]
        found = f" It holds {', '.join(inside)}." if inside else f" It holds no .safetensors file; {ACCEPTED}."
        return f"{path} is a zip archive, not a model: unpack it and pass the .safetensors file or run folder inside.{found}"
    try:
        with open(path, "rb") as f:
            legacy = f.read(1) == b"\x80"  # the pickle protocol byte (torch.save's legacy format)
    except OSError:
        legacy = False
    if legacy or path.suffix.lower() in (".pt", ".pth", ".ckpt", ".pkl", ".ts"):
        return _PICKLE.format(path=path)
    return None


def folder_message(folder: Path) -> str:
    """Why ``folder`` (no best.safetensors in it) is not a model, and which path inside it to pass instead."""
    plain = (f"{folder} is a folder without best.safetensors, not a model; pass a .safetensors file, or a folder "
             "that train/finetune wrote.")
    bundles = [folder] if _is_bundle(folder) else [p for p in sorted(folder.iterdir()) if p.is_dir() and _is_bundle(p)]
    if bundles:  # (the bundle itself, or a folder a zip of one was unpacked into)
        return (f"{bundles[0]} is a MONAI bundle (configs/, models/), not a napari-attnseg model. "
                + _OTHER_TOOL.format(accepted=ACCEPTED))
    if any(folder.glob("fold_*/checkpoint_*.pth")) or (folder / "plans.json").is_file():
        return f"{folder} is an nnU-Net results folder, not a napari-attnseg model. " + _OTHER_TOOL.format(accepted=ACCEPTED)
    files = sorted(p for p in folder.glob("*.safetensors") if not p.name.startswith(".") and p.name != "state.safetensors")
    runs = sorted(p.parent for p in folder.glob("*/best.safetensors"))
    if files or runs:  # renamed files, or the run folder one level down (a zip unpacked with its wrapper folder)
        found = ", ".join(map(str, [*files, *runs][:3]))
        return f"{plain} It holds {found}: pass {'that' if len(files) + len(runs) == 1 else 'one of those'} instead."
    return plain


_SEEN: dict[tuple[str, str], Path] = {}  # every user model listed in this session: (folder, name) -> checkpoint


def remember_listed(folder: Path, found: dict[str, Path]) -> None:
    _SEEN.update({(str(folder), name): path for name, path in found.items()})


def unlisted_user_model(text: str, folder: Path) -> Path | None:
    """A file of the user models folder named ``text`` but not listed (damaged: loading it names the file and
    what is wrong), or None. A model that was listed earlier in this session and is gone since (deleted, moved
    or renamed while napari was open) raises a :class:`CheckpointError` saying so, not "no model of that name"."""
    from .errors import CheckpointError

    for found in (folder / f"{text}.safetensors", folder / text / "best.safetensors"):
        if found.is_file():
            return found
    seen = _SEEN.get((str(folder), text))
    if seen is not None and not seen.exists():
        raise CheckpointError(f"Your model {text!r} is gone from your models folder {folder}: {seen} was "
                              "deleted, moved or renamed since it was listed. Put it back, add it again (attnseg "
                              "models --add CHECKPOINT --name NAME; napari's model list shows it when opened again), or "
                              "choose another model.")
    return None

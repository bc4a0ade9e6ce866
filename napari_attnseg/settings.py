"""The user's settings kept between sessions: a small JSON file in the user config folder.

Today it holds what the Correct panel proposes on the next day: the dataset folder last exported to (its
format and the case id written there, for the panel's hints). ``$ATTNSEG_SETTINGS_DIR`` sets the folder (the
tests point it at a temporary one, so no test reads or writes the real one); else ``~/.config/napari-attnseg``
on Linux (``$XDG_CONFIG_HOME``), ``~/Library/Preferences/napari-attnseg`` on macOS,
``%APPDATA%\\napari-attnseg`` on Windows.

Reading never fails (a missing, unreadable or damaged file reads as no settings); writing replaces the file in
one step (a crash leaves the old file or the new one, never half of one) and returns False when it could not. A
damaged file (not a JSON object: edited by hand, say) is kept as ``settings.json.damaged`` (``.damaged-2``... when
that exists) before the new one is written.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

ENV = "ATTNSEG_SETTINGS_DIR"
FILE = "settings.json"


def settings_dir() -> Path:
    """The folder of the settings file (it need not exist)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Preferences"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "napari-attnseg"


def settings_path() -> Path:
    return settings_dir() / FILE


def load_settings() -> dict[str, Any]:
    """The saved settings ({} when there are none or the file cannot be read as a JSON object)."""
    try:
        found = json.loads(settings_path().read_text(encoding="utf-8-sig"))  # (Notepad's UTF-8 starts with a BOM)
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def update_settings(**values: Any) -> bool:
    """Save ``values`` into the settings (the other keys are kept); False when the file could not be written."""
    path = settings_path()
    merged = {**load_settings(), **values}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if _damaged(path):  # (edited by hand, say): kept beside, not replaced unseen (nor an earlier one kept so)
            keep, n = path.with_name(f"{path.name}.damaged"), 2
            while keep.exists():
                keep, n = path.with_name(f"{path.name}.damaged-{n}"), n + 1
            os.replace(path, keep)
        tmp.write_text(json.dumps(merged, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        return False
    return True


def _damaged(path: Path) -> bool:
    """``path`` exists but does not read as a JSON object (the new settings would replace what it held)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True
    try:
        return not isinstance(json.loads(text), dict)
    except ValueError:
        return True


def remember_export(dataset: str | os.PathLike, format: str, case_id: str | None = None,
                    source_name: str | None = None) -> bool:
    """Keep the dataset folder an export just wrote to (with its format, case id and image name)."""
    return update_settings(last_export={"dataset": str(Path(dataset).expanduser()), "format": str(format),
                                        "case_id": case_id, "source_name": source_name})


def last_export() -> dict[str, Any] | None:
    """The last export's ``{"dataset", "format", "case_id", "source_name"}`` while its dataset folder is still a
    dataset (a ``manifest.json`` in it); None otherwise (never exported, or the folder was moved or removed)."""
    found = load_settings().get("last_export")
    if not isinstance(found, dict) or not isinstance(found.get("dataset"), str) or not found["dataset"]:
        return None
    try:
        if not (Path(found["dataset"]) / "manifest.json").is_file():
            return None
    except OSError:
        return None
    return found

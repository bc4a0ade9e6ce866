"""`attnseg demo`: napari with the plugin docked, the nuclei sample loaded and the default model run on it."""

from __future__ import annotations

import argparse
import os
import sys

NAME = "demo"
HELP = "Open napari with the plugin docked, the nuclei sample loaded and the default model run on it."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sample", default="nuclei-2d", choices=("nuclei-2d", "brain-mri-3d"), help="sample to open")
    parser.add_argument("--model", default=None, help="model to run: a bundled model, one of your models (attnseg models), "
                        "a .safetensors file or a train/finetune folder (default: the sample's bundled model)")
    parser.add_argument("--screenshot", help="save a screenshot of the viewer (PNG) once the result is shown")
    parser.add_argument("--quit", action="store_true", help="close napari after the screenshot (for tests and docs)")
    parser.add_argument("--panels", action="store_true", help="show the Correct-and-export tab once the result is shown")


def run(args: argparse.Namespace) -> int:
    resolved = None
    if args.model:  # as every command takes it; a typo must not quietly run another model (CheckpointError: exit 1)
        from ..checkpoint import read_card, resolve_model_path

        resolved = resolve_model_path(args.model)
        card, dims = read_card(resolved), 3 if args.sample == "brain-mri-3d" else 2
        if (card.config or {}).get("prompts"):  # (a click model segments nothing without clicks: Dice 0, exit 0)
            print(f"attnseg demo: error: {args.model} is a click (promptable) model: it segments the object you click "
                  "on. Open the sample in napari (File > Open Sample) and use Correct and export > Click to fix.",
                  file=sys.stderr)
            return 1
        if card.spatial_dims > dims or card.in_channels != 1:  # (the Segment tab refuses it: no result, exit 0)
            other = "brain-mri-3d" if card.spatial_dims == 3 and card.in_channels == 1 else ""
            print(f"attnseg demo: error: {args.model} is a {card.spatial_dims}D model reading {card.in_channels} "
                  f"channel(s); the {args.sample} sample is one grey {dims}D image: "
                  + (f"pass --sample {other}." if other else "run it on your own images (attnseg predict, or napari)."),
                  file=sys.stderr)
            return 1
    if args.screenshot and os.path.lexists(os.path.expanduser(args.screenshot)):  # (a figure, the image: replaced unsaid)
        print(f"attnseg demo: error: --screenshot {args.screenshot} exists; the demo never writes over a file: choose a "
              "new name (e.g. demo.png), or remove that file first.", file=sys.stderr)
        return 1
    if missing := no_display():  # (Qt aborted: "Reinstalling the application may fix this problem", exit 134)
        print(f"attnseg demo: error: {missing}", file=sys.stderr)
        return 1
    import napari
    import numpy as np
    from qtpy.QtCore import QTimer

    from .._napari import sample_data
    from ..training.losses import dice_per_class

    viewer = napari.Viewer(title="napari-attnseg demo")
    viewer.window._qt_window.resize(1500, 950)
    layers = sample_data.nuclei_2d() if args.sample == "nuclei-2d" else sample_data.brain_mri_3d()
    try:
        for data, kwargs, kind in layers:
            getattr(viewer, f"add_{kind}")(data, **kwargs)
    except AttributeError as exc:  # vispy's OpenGL queries return None without a GL context
        print(f"attnseg demo: error: napari has no OpenGL to draw with ({exc}). The demo needs a display with "
              "OpenGL: run it on a desktop, or under a virtual display (xvfb-run -a attnseg demo); "
              "QT_QPA_PLATFORM=offscreen has none.", file=sys.stderr)
        return 1
    image_name, reference_name = layers[0][1]["name"], layers[1][1]["name"]
    _, dock = viewer.window.add_plugin_dock_widget("napari-attnseg", "Attention segmentation")
    widget = dock.segment
    widget.image_combo.value = image_name
    model_name = args.model or args.sample
    note = ""
    if resolved is not None and args.model not in widget.model_names():
        model_name = widget.add_model(resolved)  # a checkpoint file or train/finetune folder: added and selected
    if model_name in widget.model_names():
        widget.model_combo.value = model_name
    else:
        fallback = _fallback_model(widget, 3 if args.sample == "brain-mri-3d" else 2)
        note = (f"No bundled model {model_name!r}; running {fallback!r} instead." if fallback
                else f"No bundled model {model_name!r} and no other model for this sample; load a checkpoint to segment.")
        print(f"attnseg demo: {note}", flush=True)
    worker = widget.run() if widget.model_combo.value else None

    def report() -> None:
        mask_name = f"{image_name} mask"
        if mask_name in viewer.layers:
            ref = np.asarray(viewer.layers[reference_name].data)
            pred = np.asarray(viewer.layers[mask_name].data)
            n = int(max(ref.max(), pred.max())) + 1
            dice = dice_per_class(pred, ref, max(n, 2))
            print("demo Dice against the reference labels: " + ", ".join(f"{d:.4f}" for d in dice), flush=True)
        print(f"model: {widget.model_combo.value}", flush=True)  # (the one that ran, as the Segment tab lists it)
        shown = ", ".join(f"{ly.name}{'' if ly.visible else ' (hidden)'}" for ly in viewer.layers)
        print(f"layers: {shown}", flush=True)
        viewer.reset_view()
        if note:  # the run's own status line replaced it; keep saying which model ran
            widget.status.value = f"{note}\n{widget.status.value}"
            viewer.status = note
        if args.panels and mask_name in viewer.layers:
            viewer.layers.selection.active = viewer.layers[mask_name]
            dock.show_tab("Correct and export")
        QTimer.singleShot(200, finish)  # let the widgets lay out the new texts first

    def finish() -> None:
        if args.screenshot:
            _close_toasts(viewer)  # start-up notices (e.g. Qt backend deprecations) would cover the canvas
            viewer.screenshot(args.screenshot, canvas_only=False)
            print(f"screenshot: {args.screenshot}", flush=True)
        if args.quit:
            QTimer.singleShot(100, viewer.close)

    if worker is not None:
        widget.run_done.connect(lambda ok: QTimer.singleShot(300, report))
    elif args.quit:
        QTimer.singleShot(100, viewer.close)
    napari.run()
    return 0


def no_display() -> str:
    """Why Qt cannot open a window here (Linux with no X11 or Wayland display for its platform), '' when it can."""
    if not sys.platform.startswith("linux"):
        return ""
    platform = os.environ.get("QT_QPA_PLATFORM", "").strip().lower()
    x11, wayland = os.environ.get("DISPLAY"), os.environ.get("WAYLAND_DISPLAY")
    if (platform == "xcb" and not x11) or (not platform and not x11 and not wayland):
        unset = "DISPLAY is not set" if platform else "neither DISPLAY nor WAYLAND_DISPLAY is set"
        return (f"no display to open napari on ({unset}). Run it on a desktop, or under a virtual display: "
                "xvfb-run -a attnseg demo --screenshot demo.png --quit")
    if x11 and (platform == "xcb" or (not platform and not wayland)) and (why := x_display_gone(x11)):
        # (a DISPLAY left from a closed desktop, ssh session or Xvfb: Qt printed "could not connect to display" and
        # "Reinstalling the application may fix this problem", and aborted, exit 134, 10 s later)
        return (f"no X server answers at DISPLAY={x11} ({why}): the display it names has gone (a closed desktop or "
                "ssh session, an Xvfb that ended). Run it under a virtual display: xvfb-run -a attnseg demo "
                "--screenshot demo.png --quit; or set DISPLAY to a running X display (on a desktop: echo $DISPLAY in "
                "one of its terminals)" + (", or unset it to use Wayland." if wayland else "."))
    return ""


def x_display_gone(display: str, timeout: float = 3.0) -> str:
    """Why nothing listens at the X ``display`` (``:N``, ``:N.S``, ``unix:N``: its local socket, abstract or in
    /tmp/.X11-unix; ``host:N``: TCP port 6000 + N), '' when something does or the name is not one of these forms."""
    import socket

    host, _, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if not number.isdigit() or "/" in host:
        return ""  # (a form this does not read: Qt is left to try)
    if host in ("", "unix"):
        path = f"/tmp/.X11-unix/X{number}"
        errors = []
        for address in ("\0" + path, path):  # the abstract socket Xorg and Xvfb also listen on, then the file
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(timeout)
                    sock.connect(address)
                return ""
            except OSError as exc:
                errors.append(exc)
        try:  # (':N': libxcb then tries TCP on localhost, where an X server started with -nolisten unix answers)
            if not host:
                with socket.create_connection(("localhost", 6000 + int(number)), timeout=timeout):
                    return ""
        except OSError:
            pass
        return f"{path}: {errors[-1].strerror or errors[-1]}"
    try:
        with socket.create_connection((host, 6000 + int(number)), timeout=timeout):
            return ""
    except OSError as exc:
        return f"{host} port {6000 + int(number)}: {exc.strerror or exc}"


def _fallback_model(widget, sample_dims: int) -> str:
    """Select the first model in the widget's list that can take the sample; its name, or ''."""
    for name in widget.model_names():
        widget.model_combo.value = name
        model = widget._current_model(quiet=True)
        if model is not None and model.spatial_dims <= sample_dims and not getattr(model, "prompt_options", None):
            return name  # (a click model segments nothing without clicks)
    return ""


def _close_toasts(viewer) -> None:
    """Close the notification pop-ups shown over the canvas (they stay in the notification list)."""
    try:
        from napari._qt.dialogs.qt_notification import NapariQtNotification
    except ImportError:  # a napari without it: keep the pop-ups
        return
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()

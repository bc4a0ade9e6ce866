"""A minutes budget that cannot hold the first epoch (a 3D model on a CPU: 45 s a step, 25 steps an epoch, the
panel's 5-minute default) is said two steps into the run, in the CLI's output and as the panel's warning, not only
in the summary once the budget is spent."""

from __future__ import annotations

import time

import pytest
from test_finetune_budget import _dataset, _slow_steps

from napari_attnseg.training import trainer as trainer_module


@pytest.fixture
def slow_case(tmp_path, monkeypatch):
    """A one-case dataset, a small start model, and steps slowed to 0.3 s each (a CPU's 3D pace, scaled down)."""
    found = _dataset(tmp_path, reviewed=(1, 4, 6, 8, 10))
    _slow_steps(monkeypatch, 0.3)
    return found


def test_the_run_says_two_steps_in_that_its_first_epoch_will_not_fit(slow_case, tmp_path):
    from napari_attnseg.inference.prediction import CancelToken
    from napari_attnseg.training import TrainConfig, train

    ds, start = slow_case
    token, seen = CancelToken(), []

    def on_step(info):
        seen.append(info)
        if info.get("warning"):
            token.cancel()  # what the user does on reading it

    res = train(TrainConfig(dataset=str(ds), out=str(tmp_path / "o"), start_model=str(start), minutes=0.5,
                            iters_per_epoch=400, batch_size=2, patch=[32, 32]), on_step=on_step, cancel=token)
    said = [(i["step"], i["warning"]) for i in seen if i.get("warning")]
    assert len(said) == 1 and said[0][0] == 2, said
    text = said[0][1]
    assert " s a step here: one epoch (400 steps) with its validation takes about " in text, text
    need = float(text.split("give at least ")[1].split(" min")[0])
    assert need * 60 >= 400 * 0.3, text  # at least the epoch's steps at this pace
    assert res.cancelled and len(seen) == 2  # cancelled at once: no more steps ran


def test_a_budget_that_holds_the_epoch_says_nothing(slow_case, tmp_path):
    from napari_attnseg.training import TrainConfig, train

    ds, start = slow_case
    seen = []
    train(TrainConfig(dataset=str(ds), out=str(tmp_path / "o"), start_model=str(start), minutes=2.0,
                      iters_per_epoch=3, epochs=1, batch_size=2, patch=[32, 32], refit=0.0), on_step=seen.append)
    assert seen and not any(i.get("warning") for i in seen)


def test_the_command_line_prints_the_warning_while_it_runs(slow_case, tmp_path, capsys):
    from napari_attnseg.cli import main

    ds, start = slow_case
    rc = main(["finetune", str(ds), "--model", str(start), "--out", str(tmp_path / "o"), "--minutes", "0.2",
               "--iters-per-epoch", "200", "--batch", "2", "--patch", "32,32"])
    out = capsys.readouterr()
    text = out.out + out.err
    assert rc == 0, text
    warned = [line for line in text.splitlines() if "s a step here: one epoch (200 steps)" in line]
    assert warned and warned[0].lstrip().startswith("warning: "), text
    assert "Cancel and give at least" in warned[0]


def test_the_fine_tune_panel_warns_while_it_runs(make_napari_viewer, qtbot, slow_case, monkeypatch):
    import dataclasses

    from napari_attnseg._napari import finetune_widget as fw

    ds, start = slow_case
    warnings: list[str] = []
    monkeypatch.setattr(fw, "notify_warning", warnings.append)
    w = fw.FinetuneWidget(make_napari_viewer())
    w.add_model("start", str(start))
    w.dataset_edit.value = str(ds)
    w.minutes_spin.value = 5  # the panel's default
    config = w.config
    # 5,000 steps of 0.3 s an epoch stand for a 3D model's 25 steps of 45 s on a CPU
    monkeypatch.setattr(w, "config", lambda: dataclasses.replace(config(), iters_per_epoch=5000, batch_size=2,
                                                                 patch=[32, 32]))
    assert w.run() is not None
    qtbot.waitUntil(lambda: any("s a step here" in t for t in warnings), timeout=60000)
    w.cancel_button.native.click()
    qtbot.waitUntil(lambda: w.run_button.enabled, timeout=60000)
    text = next(t for t in warnings if "s a step here" in t)
    assert "one epoch (5000 steps)" in text and "Cancel and give at least" in text, text


def test_a_machine_that_gets_busy_later_in_the_first_epoch_is_still_said(tmp_path, monkeypatch):
    """The pace at step 2 fitted (brain1 on 2 cores: 12 s a step), then other jobs slowed the steps to 30 s and the run
    ended inside its first epoch with nothing said until the summary: every step of the first epoch is looked at."""
    from napari_attnseg.inference.prediction import CancelToken
    from napari_attnseg.training import TrainConfig, train

    ds, start = _dataset(tmp_path, reviewed=(1, 4, 6, 8, 10))
    step, calls = trainer_module.Trainer._step, []

    def busier(self, x, y):
        calls.append(1)
        time.sleep(0.01 if len(calls) <= 3 else 1.0)  # fast at first, then the machine gets busy
        return step(self, x, y)

    monkeypatch.setattr(trainer_module.Trainer, "_step", busier)
    token, said = CancelToken(), []

    def on_step(info):
        if info.get("warning"):
            said.append((info["step"], info["warning"]))
            token.cancel()

    train(TrainConfig(dataset=str(ds), out=str(tmp_path / "o"), start_model=str(start), minutes=0.5,
                      iters_per_epoch=60, batch_size=2, patch=[32, 32]), on_step=on_step, cancel=token)
    assert len(said) == 1 and said[0][0] > 3 and "one epoch (60 steps)" in said[0][1], said

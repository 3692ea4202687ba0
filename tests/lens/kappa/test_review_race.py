"""Two --shard tasks starting together on a fresh kappa set must not refuse each other's folder."""

from __future__ import annotations

import json

from astrotool.cli import main


def test_a_fresh_set_holding_only_another_tasks_layout_is_taken(tmp_path, capsys):
    ws = tmp_path / "ws"
    (ws / "lens" / "kappa" / "sims" / "krace" / "KAPPA").mkdir(parents=True)   # task 1 got here first
    code = main(["--json", "-w", str(ws), "-q", "--shard", "0/2", "lens", "kappa", "simulate", "--size", "32",
                 "--name", "krace", "-n", "4", "--chunk-size", "2"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert json.loads(out.out)["missing"] == 2


def test_a_folder_of_other_files_is_still_refused(tmp_path, capsys):
    ws = tmp_path / "ws"
    (ws / "lens" / "kappa" / "sims" / "other").mkdir(parents=True)
    (ws / "lens" / "kappa" / "sims" / "other" / "notes.txt").write_text("mine")
    code = main(["-w", str(ws), "-q", "lens", "kappa", "simulate", "--size", "32", "--name", "other", "-n", "2"])
    assert code == 2 and "exists without" in capsys.readouterr().err


def test_a_record_claimed_by_another_task_in_between_is_compared(tmp_path, capsys, monkeypatch):
    from astrotool_lens.kappa import simulate

    ws = tmp_path / "ws"
    out = ws / "lens" / "kappa" / "sims" / "kr2"
    (out / "KAPPA").mkdir(parents=True)
    real = simulate._own_layout

    def claimed(folder):   # another task writes its record right after this one looked
        (folder / simulate.SETTINGS_FILE).write_text(json.dumps({"size": 64, "seed": 99}))
        return real(folder)

    monkeypatch.setattr(simulate, "_own_layout", claimed)
    code = main(["-w", str(ws), "-q", "lens", "kappa", "simulate", "--size", "32", "--name", "kr2", "-n", "2"])
    assert code == 2 and "another task" in capsys.readouterr().err
    assert json.loads((out / simulate.SETTINGS_FILE).read_text())["seed"] == 99

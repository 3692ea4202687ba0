"""The parts of ``--shard`` tasks that make one table (:mod:`astrotool.parts`)."""

import subprocess
import sys

from astrotool import parts

TRY_LOCK = """
import fcntl, sys
with open(sys.argv[1], "a") as f:
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(3)
"""


def test_the_lock_keeps_another_process_out_until_released(tmp_path):
    table = tmp_path / "run" / "t_events.parquet"
    lock_file = table.with_name(".t_events.parquet.lock")

    def other_gets_it() -> bool:
        return subprocess.run([sys.executable, "-c", TRY_LOCK, str(lock_file)]).returncode == 0

    with parts.lock(table):
        assert lock_file.is_file() and not other_gets_it()
    assert other_gets_it()


def test_remove_takes_the_merged_parts_other_runs_files_and_edited_sources_parts_not_failed_marks(tmp_path):
    folder = tmp_path / ".parts" / "name"
    folder.mkdir(parents=True)
    merged = folder / "run1-a-s.json"
    kept = folder / "run1-c-s.json"   # an item the table could not stand in for
    edited = folder / "run1-c-s0.json"   # c's part before its file was edited
    mark = parts.failed_mark(folder / "run1-b-s.json")
    other = folder / "run0-a-s.json"
    for f in (merged, kept, edited, mark, other):
        f.write_text("{}")
    parts.remove(folder, "run1", [merged], [merged, kept, folder / "run1-b-s.json"])
    assert sorted(p.name for p in folder.iterdir()) == sorted([mark.name, kept.name])
    parts.remove(folder, "run1", [mark, kept], [])
    assert not (tmp_path / ".parts").exists()


def test_inputs_left_to_another_run_of_the_name_are_told_apart(tmp_path, caplog):
    """Two --shard tasks of one name with other models: each said the other tasks would do the rest, and no
    table was ever written (each run's parts wait for its own)."""
    import logging

    src = tmp_path / "a.avro"
    src.write_bytes(b"x")
    folder = tmp_path / ".parts" / "mix"
    mine = {k: parts.part_path(folder, "r1", k, src, ".parquet") for k in ("k1", "k2", "k3")}
    other = parts.part_path(folder, "r2", "k2", src, ".parquet")   # task 1's input, predicted by another run
    folder.mkdir(parents=True)
    for path in (mine["k1"], other):
        path.write_bytes(b"")
    assert parts.of_other_runs(mine, ["k2", "k3"]) == ["k2"]
    writing = folder / f".{mine['k3'].name}.partial-host-1.parquet"   # a part of this run being written
    writing.write_bytes(b"")
    parts.failed_mark(parts.part_path(folder, "r3", "k3", src, ".parquet")).write_text("error")
    assert parts.of_other_runs(mine, ["k2", "k3"]) == ["k2"]
    parts.log_waiting(logging.getLogger("astro.test"), 1, 3, "mix.parquet", 1)
    assert caplog.records[-1].levelno == logging.WARNING
    assert "1 of the other inputs have parts of another run of this name" in caplog.text
    assert "another run" not in parts.waiting_message(1, 3, "mix.parquet")

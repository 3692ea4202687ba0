"""Writes that fail (a full disk, a read-only folder) and temporary files left by a killed run."""

from __future__ import annotations

import errno
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest

from astrotool.cli import main
from astrotool.workspace import atomic_path, temp_sibling, write_text_atomic


def _partials(root):
    return [p for p in pathlib.Path(root).rglob("*") if ".partial" in p.name]


def test_a_full_disk_names_the_file_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    """ENOSPC half-way through a write: exit 1, 'no space left on device writing <file>', no temp file."""
    real = pathlib.Path.write_text

    def half_then_full(self, text, *args, **kwargs):
        real(self, text[: len(text) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(pathlib.Path, "write_text", half_then_full)
    ws = tmp_path / "ws"
    code = main(["-w", str(ws), "init"])
    err = capsys.readouterr().err
    assert code in (1, 2)
    assert f"no space left on device writing {ws / 'astro.toml'}" in err, err
    assert "Traceback" not in err and ".partial" not in err
    assert not (ws / "astro.toml").exists() and not _partials(ws)


@pytest.mark.parametrize("number, words", [(errno.EACCES, "permission denied"),
                                           (errno.EROFS, "read-only file system")])
def test_a_folder_that_cannot_be_written_names_the_target(tmp_path, monkeypatch, number, words):
    """The error named the temporary file (.x.partial-…) instead of the file asked for."""
    real = pathlib.Path.write_text

    def refuse(self, *args, **kwargs):
        raise OSError(number, os.strerror(number), str(self))

    monkeypatch.setattr(pathlib.Path, "write_text", refuse)
    from astrotool.errors import AstroError

    with pytest.raises(AstroError) as info:
        write_text_atomic(tmp_path / "out.txt", "x")
    assert str(info.value) == f"{words} writing {tmp_path / 'out.txt'}"
    assert info.value.exit_code == 2 and not _partials(tmp_path)
    monkeypatch.setattr(pathlib.Path, "write_text", real)


def test_an_input_that_cannot_be_read_is_not_called_a_write(tmp_path):
    """EACCES on another file inside a write (an input) keeps its own error and name."""
    with pytest.raises(PermissionError):
        with atomic_path(tmp_path / "out.txt"):
            raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "input.fits"))
    assert not _partials(tmp_path)


def test_a_stale_temp_of_a_dead_writer_is_removed_by_the_next_write(tmp_path):
    """kill -9 during a write left a .partial file that no later run removed."""
    script = textwrap.dedent(f"""
        import os, sys, time
        from astrotool.workspace import atomic_path
        with atomic_path({str(tmp_path / 'a.txt')!r}) as tmp:
            tmp.write_bytes(b"")
            print(tmp, flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        left = pathlib.Path(proc.stdout.readline().strip())
        assert left.exists()
        # a live writer's temp file is not touched
        write_text_atomic(tmp_path / "b.txt", "b")
        assert left.exists()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert left.exists() and left.stat().st_size == 0   # what kill -9 leaves
    rerun = f"from astrotool.workspace import write_text_atomic; write_text_atomic({str(tmp_path / 'b.txt')!r}, 'b again')"
    subprocess.run([sys.executable, "-c", rerun], check=True)   # a later run writing to that folder
    assert not left.exists() and _partials(tmp_path) == []
    assert (tmp_path / "b.txt").read_text() == "b again"


def test_temp_names_carry_the_writer(tmp_path):
    """Host and pid in the name: another host's temp file is never removed."""
    tmp = temp_sibling(tmp_path / "x.h5")
    assert tmp.suffix == ".h5" and f"-{os.getpid()}-" in tmp.name and tmp.name.startswith(".x.h5.partial-")
    other = tmp_path / ".y.partial-otherhost-1-abcd1234"
    other.write_bytes(b"")
    with atomic_path(tmp_path / "y") as t:
        t.write_text("y")
    assert other.exists()


@pytest.mark.parametrize("kind, workers", [("serial", 1), ("process", 1), ("dask", 1)])
def test_a_full_disk_starts_no_more_items(tmp_path, kind, workers):
    """After an item finds the disk full the queued items are cancelled, not run to fail one by one."""
    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    try:
        from _batch_items import fill

        from astrotool.executors import ExecutorOptions, run_items

        names = ["a", "full", *(f"q{i}" for i in range(8))]
        items = [(str(tmp_path), n, 0.2) for n in names]
        results, failures = run_items(fill, items, keys=names, options=ExecutorOptions(kind=kind, jobs=workers))
    finally:
        sys.path.remove(str(pathlib.Path(__file__).parent))
    started = {p.name for p in tmp_path.iterdir()}
    assert {"a", "full"} <= started and len(started) <= 6, started  # a pool may have handed on a few already
    done = [k for k, _ in results]
    assert "a" in done and set(done) <= started - {"full"}  # (Dask may drop the result of one it had started)
    by_key = {f.key: f for f in failures}
    assert by_key["full"].error == f"no space left on device writing {tmp_path / 'out.h5'}" and by_key["full"].full_disk
    assert set(by_key) == set(names) - set(done)
    for n in set(by_key) - {"full"}:
        assert by_key[n].error == "cancelled: the disk is full (see full)"
        assert by_key[n].exit_code == 1

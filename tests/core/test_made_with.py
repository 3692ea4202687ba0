"""The core's one rule for reruns: keep an output made with the same settings, refuse (exit 2, naming each
changed key) or recompute one made with others; is_done applies it."""

import json

import pytest

from astrotool import made_with
from astrotool.errors import AstroError
from astrotool.workspace import is_done


def _made(path, settings, **kw):
    path.write_text("output")
    rec = made_with.record(settings, **kw)
    made_with.write(path, rec)
    return rec


def test_record_is_stable_flat_and_ignores_what_does_not_change_the_output():
    a = made_with.record({"fit": {"statistic": "chi2", "threads": 4, "range": (1, 2)}}, seed=3, version=2,
                         ignore=["fit.threads"])
    b = made_with.record({"fit": {"range": [1, 2], "threads": 8, "statistic": "chi2"}}, seed=3, version=2,
                         ignore=["fit.threads"])
    assert a == b
    assert a["settings"] == {"fit.range": [1, 2], "fit.statistic": "chi2", "seed": 3, "version": 2}
    assert len(a["hash"]) == 16
    assert made_with.record({"x": 1}, version=3)["hash"] != made_with.record({"x": 1}, version=2)["hash"]


def test_sidecar_is_hidden_beside_the_output(tmp_path):
    out = tmp_path / "tile_chi.h5"
    rec = _made(out, {"a": 1})
    assert made_with.sidecar(out) == tmp_path / ".tile_chi.h5.made_with.json"
    stored = json.loads(made_with.sidecar(out).read_text())
    assert stored["schema"] == made_with.SCHEMA and made_with.read(out)["hash"] == rec["hash"]
    assert made_with.sidecar(tmp_path / ".done") == tmp_path / ".done.made_with.json"


def test_keep_skips_refuses_or_recomputes(tmp_path):
    out = tmp_path / "out.parquet"
    assert not made_with.keep([out], made_with.record({"a": 1}))            # missing: make it
    _made(out, {"a": 1, "b": "x"}, seed=0)
    assert made_with.keep([out], made_with.record({"b": "x", "a": 1}, seed=0))
    assert not made_with.keep([out], made_with.record({"a": 1, "b": "x"}, seed=0), overwrite=True)
    _made(out, {"a": 1, "b": "x"}, seed=0)                                   # made again
    other = made_with.record({"a": 2, "b": "x", "c": True}, seed=5)
    with pytest.raises(made_with.SettingsChanged) as err:
        made_with.keep([out], other)
    assert err.value.exit_code == 2
    msg = str(err.value)
    assert "a: 1 -> 2" in msg and "seed: 0 -> 5" in msg and "c: (absent) -> true" in msg and "--overwrite" in msg
    assert "b:" not in msg and str(out) in msg
    assert not made_with.keep([out], other, recompute=True)
    assert not made_with.keep([out, tmp_path / "missing"], other)             # incomplete: make it


def test_output_without_a_record_is_made_again_with_a_warning(tmp_path, caplog):
    out = tmp_path / "old.fits"
    out.write_text("stopped before its record")
    assert not made_with.keep([out], made_with.record({"a": 1}))
    assert "no record of the settings that made it" in caplog.text


def test_outputs_to_be_made_lose_their_old_record_first(tmp_path):
    """A run stopped half-way through --overwrite must not leave new outputs beside the old record: the
    next run with the old settings would keep them (``skipped (done)``)."""
    out = tmp_path / "chi.h5"
    _made(out, {"statistic": "chi2"})
    chi2, dre = made_with.record({"statistic": "chi2"}), made_with.record({"statistic": "dre"})
    made_with.check_all([([out], dre, False)], overwrite=True)   # the check before any work forgets nothing
    assert made_with.read(out) is not None
    assert not made_with.keep([out], dre, overwrite=True)
    assert made_with.read(out) is None                              # stopped here: nothing to trust
    assert not made_with.keep([out], chi2)                           # so the old settings make it again
    _made(out, {"statistic": "mosaic"})
    assert not made_with.keep([out], made_with.record({"statistic": "other"}), recompute=True)
    assert made_with.read(out) is None


def test_check_all_names_every_refused_output(tmp_path):
    recs = []
    for i in range(3):
        p = tmp_path / f"t{i}.h5"
        _made(p, {"k": 0})
        recs.append(([p], made_with.record({"k": 1}), False))
    recs.append(([tmp_path / "new.h5"], made_with.record({"k": 1}), False))
    with pytest.raises(AstroError) as err:
        made_with.check_all(recs)
    assert err.value.exit_code == 2 and "3 outputs" in str(err.value) and str(err.value).count("k: 0 -> 1") == 3
    made_with.check_all(recs, overwrite=True)
    made_with.check_all([(o, r, True) for o, r, _ in recs])                   # all may recompute


def test_is_done_uses_the_rule(tmp_path):
    out = tmp_path / "x.parquet"
    assert not is_done(out, made_with=made_with.record({"n": 1}))
    _made(out, {"n": 1})
    assert is_done(out) and is_done(out, made_with=made_with.record({"n": 1}))
    with pytest.raises(made_with.SettingsChanged, match="n: 1 -> 2"):
        is_done(out, made_with=made_with.record({"n": 2}))
    assert not is_done(out, made_with=made_with.record({"n": 2}), recompute=True)


def test_training_resume_names_keys_the_same_way():
    from astrotool.ml.training import settings_changes

    old, new = {"lr": 0.1, "data": {"name": "a"}}, {"lr": 0.2, "data": {"name": "b"}}
    assert settings_changes(old, new) == made_with.changes(old, new) == ['data.name: "a" -> "b"', "lr: 0.1 -> 0.2"]


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, astrotool.made_with; print(sorted(m for m in ('numpy', 'astropy', 'torch') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


def test_file_checksum_follows_the_content_and_reads_a_kept_one_only_while_the_file_stays(tmp_path):
    import json
    import os
    import shutil

    from astrotool.made_with import file_checksum

    a, cache = tmp_path / "a.fits", tmp_path / "out" / ".a.json"
    a.write_bytes(b"x" * 1000)
    first = file_checksum(a, cache)
    assert first.startswith("sha256 ") and first.endswith(", 1000 B") and file_checksum(tmp_path / "none") is None
    assert json.loads(cache.read_text())["checksum"] == first
    kept = json.loads(cache.read_text())
    cache.write_text(json.dumps({**kept, "checksum": "kept"}))   # while the file stays, the kept value is read
    assert file_checksum(a, cache) == "kept"
    st = a.stat()
    a.write_bytes(b"y" * 1000)                                    # same size, time set back: read again
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_checksum(a, cache) not in ("kept", first)
    shutil.copy2(a, tmp_path / "b.fits")                          # a copy: the same content, the same checksum
    assert file_checksum(tmp_path / "b.fits") == file_checksum(a)


def test_a_version_only_change_says_an_older_version_made_it(tmp_path):
    """A bumped stage version was refused as `version: 1 -> 2` among settings the user never changed."""
    out = tmp_path / "a.h5"
    out.write_text("x")
    made_with.write(out, made_with.record({"x": 1}, version=1))
    new = made_with.record({"x": 1}, version=2, made_by="astrotool-dre fit stage")
    with pytest.raises(made_with.SettingsChanged) as err:
        made_with.keep([out], new)
    msg = str(err.value)
    assert "made by an older astrotool-dre fit stage (version 1; this one is 2)" in msg, msg
    assert msg.endswith("use --overwrite to make it again with this version") and "->" not in msg, msg
    assert not made_with.keep([out], new, recompute=True, forget=False)  # a stage that remakes its outputs does so
    with pytest.raises(AstroError, match="2 outputs exist but were made by another version"):
        other = tmp_path / "b.h5"
        other.write_text("x")
        made_with.write(other, made_with.record({"x": 1}, version=1))
        made_with.check_all([([out], new, False), ([other], new, False)])


def test_record_path_is_relative_inside_the_workspace_and_absolute_outside(tmp_path, monkeypatch):
    from astrotool.made_with import record_path

    ws = tmp_path / "ws"
    (ws / "plato" / "models" / "m").mkdir(parents=True)
    monkeypatch.chdir(ws)
    assert record_path("plato/models/m", ws) == record_path(ws / "plato/models/m/../m", ".") == "plato/models/m"
    assert record_path(tmp_path / "other", ws) == str((tmp_path / "other").resolve())
    assert record_path("plato", None) == str((ws / "plato").resolve())


def test_a_resumed_overwrite_keeps_what_it_made_and_remakes_the_rest(tmp_path):
    """A stopped --overwrite could not go on: run again with --overwrite it made everything again, and without
    it refused the outputs it had not reached yet. An Overwrite keeps what it made since it began."""
    import os

    old, new = tmp_path / "old.h5", tmp_path / "new.h5"
    _made(old, {"snr": 200})
    rec = _made(new, {"snr": 50})
    since = new.stat().st_mtime
    os.utime(old, (since - 10, since - 10))
    ow = made_with.Overwrite(since)
    assert ow and made_with.replaces(ow, old) and not made_with.replaces(ow, new)
    assert made_with.replaces(ow, tmp_path / "missing.h5") and made_with.replaces(made_with.Overwrite(), new)
    assert made_with.replaces(True, new) and not made_with.replaces(False, old)
    assert made_with.keep([new], rec, overwrite=ow)                     # this overwrite's own: kept
    assert not made_with.keep([old], made_with.record({"snr": 50}), overwrite=ow)   # older: made again
    assert made_with.read(old) is None                                  # ... its old record gone first
    assert is_done(new, ow, rec) and not is_done(new, True, rec)
    assert not is_done(new, ow)   # without a record nothing tells what made it: made again
    other = made_with.record({"snr": 20})
    assert not made_with.keep([new], other, overwrite=ow)               # its own, other settings: made, not refused


def test_context_overwrite_begins_once_and_ends_with_success(tmp_path):
    """The start of an --overwrite is kept in the workspace until a run of the same command succeeds."""
    from astrotool.context import Context, GlobalOptions

    def ctx(*args):
        argv = ["-w", str(tmp_path), "--overwrite", "plato", "simulate", *args]
        return Context(GlobalOptions(workspace=str(tmp_path), overwrite=True), "plato simulate", ["astro", *argv])

    assert Context(GlobalOptions(workspace=str(tmp_path)), "plato simulate").overwrite is False
    first = ctx("-n", "8")
    since = first.overwrite.since
    assert since is not None and len(list((tmp_path / "runs" / ".overwrite").glob("*.json"))) == 1
    first.finish("terminated", 143)   # stopped: the next run of it goes on from there
    again = ctx("-n", "8")
    assert again.overwrite.since == since and ctx("-n", "16").overwrite.since != since   # other arguments
    marker = again._overwrite_marker
    again.finish("ok", 0)
    assert not marker.exists()                    # succeeded: the next --overwrite makes everything again



def test_a_training_copy_never_writes_the_overwrite_marker_nor_says_it_goes_on(tmp_path, monkeypatch):
    """A DDP copy (rank > 0) that read the marker first wrote it, and its rank 0 then logged that a fresh
    --overwrite was "going on with the one begun ... by a run that did not finish"."""
    import logging

    from astrotool.context import Context, GlobalOptions

    def ctx():
        argv = ["-w", str(tmp_path), "--overwrite", "lens", "train"]
        return Context(GlobalOptions(workspace=str(tmp_path), overwrite=True), "lens train", ["astro", *argv])

    monkeypatch.setenv("LOCAL_RANK", "1")
    assert ctx().overwrite.since is None and not (tmp_path / "runs" / ".overwrite").exists()
    monkeypatch.delenv("LOCAL_RANK")
    since = ctx().overwrite.since                  # rank 0 writes it
    said = []
    for copy in ("1", "0"):   # a copy reads it in silence; rank 0, run again, says it goes on
        monkeypatch.setenv("SLURM_PROCID", copy)
        c = ctx()
        monkeypatch.setattr(c, "log", logging.getLogger("astro.test"))
        monkeypatch.setattr(c.log, "info", lambda msg, *args: said.append((copy, msg % args)))
        assert c.overwrite.since == since
    assert [copy for copy, msg in said if "going on with the one begun" in msg] == ["0"], said

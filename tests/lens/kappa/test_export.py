"""`astro lens kappa export`: the ONNX parity check's inputs: the model's training set (a copied workspace's
own), else random fields with a warning that says why."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .conftest import S, run


def test_parity_inputs_fall_back_to_random_fields_with_a_warning(tmp_path, caplog):
    from astrotool_lens.kappa.export import parity_epsilon

    meta = {"training": {"size": 16, "dataset_path": str(tmp_path / "train_set")}}
    log = logging.getLogger("astro.test_kappa_review")
    with caplog.at_level(logging.WARNING, logger=log.name):
        eps, origin = parity_epsilon(meta, 2, 0, log=log)
    assert origin == "random fields" and eps.shape == (2, 3, 16, 16)
    # the warning names the set, why it is not used and what is used instead
    assert str(tmp_path / "train_set") in caplog.text and "is gone" in caplog.text
    assert "ONNX parity check runs on random fields" in caplog.text
    # no training set named: random fields, nothing to warn about
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=log.name):
        parity_epsilon({"training": {"size": 16}}, 1, 0, log=log)
    assert not caplog.text


def test_parity_warning_for_an_empty_training_set_says_it_is_empty(tmp_path, caplog, monkeypatch):
    import astrotool_lens.kappa.data as kdata
    from astrotool_lens.kappa.export import parity_epsilon

    class Empty:
        def __init__(self, path):
            self.root, self.n, self.size = Path(path), 0, 16

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(kdata, "KappaDataset", Empty)
    (tmp_path / "e").mkdir()
    log = logging.getLogger("astro.test_kappa_review")
    with caplog.at_level(logging.WARNING, logger=log.name):
        eps, origin = parity_epsilon({"training": {"size": 16, "dataset_path": str(tmp_path / "e")}}, 1, 0, log=log)
    assert origin == "random fields"
    assert "holds no maps" in caplog.text and "not the model's" not in caplog.text


def test_export_in_a_copied_workspace_reads_the_copy_s_training_set(trained, tmp_path, capsys, caplog):
    """model.json kept the training set's absolute path: a copied workspace's export read the original's set,
    and with the copy's set removed it still read the original's, with no warning."""
    import shutil

    ws, _ = trained
    meta = json.loads((ws / "lens" / "kappa" / "models" / "u" / "model.json").read_text())
    assert meta["training"]["dataset_path"] == "../../data/tiny"     # relative to the model folder
    copy = tmp_path / "copy"
    shutil.copytree(ws, copy, ignore=shutil.ignore_patterns("runs", "predictions", "*.onnx"))
    base = ["-w", copy, "--json", "--set", "lens.kappa.export.parity_samples=2", "lens", "kappa", "export",
            "--model", "u"]
    code, out, err = run(capsys, *base)
    assert code == 0, err
    assert json.loads(out)["parity_inputs"] == str((copy / "lens" / "kappa" / "data" / "tiny").resolve())
    # a model.json of an earlier version (the original's absolute path): the copy's set of that name
    mjson = copy / "lens" / "kappa" / "models" / "u" / "model.json"
    old = json.loads(mjson.read_text())
    old["training"]["dataset_path"] = str((ws / "lens" / "kappa" / "data" / "tiny").resolve())
    mjson.write_text(json.dumps(old))
    code, out, err = run(capsys, "--overwrite", *base)
    assert code == 0, err
    assert json.loads(out)["parity_inputs"] == str((copy / "lens" / "kappa" / "data" / "tiny").resolve())
    mjson.write_text(json.dumps(meta))
    shutil.rmtree(copy / "lens" / "kappa" / "data" / "tiny")
    code, out, err = run(capsys, "--overwrite", *base)
    assert code == 0, err
    assert json.loads(out)["parity_inputs"] == "random fields"
    gone = str((copy / "lens" / "kappa" / "data" / "tiny").resolve())   # named where it was looked for
    assert gone in err + caplog.text and "is gone" in err + caplog.text


def test_parity_inputs_of_an_old_model_json_with_an_absolute_path(trained, tmp_path, caplog):
    from astrotool_lens.kappa.export import parity_epsilon

    ws, _ = trained
    tiny = (ws / "lens" / "kappa" / "data" / "tiny").resolve()
    elsewhere = tmp_path / "elsewhere" / "lens" / "kappa"
    old = {"training": {"size": S, "dataset_path": str(tiny), "dataset": "tiny"}}
    eps, origin = parity_epsilon(old, 2, 0, model=elsewhere / "models" / "u",
                                 stage=elsewhere / "data")          # an absolute path, no copy here: read as is
    assert origin == str(tiny) and eps.shape == (2, 3, S, S)
    log = logging.getLogger("astro.test_kappa_review")
    with caplog.at_level(logging.WARNING, logger=log.name):
        gone = {"training": {"size": S, "dataset_path": str(tmp_path / "gone"), "dataset": "gone"}}
        _, origin = parity_epsilon(gone, 1, 0, log=log, model=ws / "lens" / "kappa" / "models" / "u",
                                   stage=ws / "lens" / "kappa" / "data")
    assert origin == "random fields" and "is gone" in caplog.text and str(tmp_path / "gone") in caplog.text

"""``astro ztf embed``: the UMAP of an autoencoder's latent space, named after its set, kept on an identical
rerun and refused with other settings unless --overwrite."""

from __future__ import annotations

import pytest

from tests.ztf.conftest import usage_error as _error


def test_embed_names_the_dataset_and_keeps_an_identical_rerun(vae_ws, astro):
    out = vae_ws / "ztf" / "embeddings"
    assert (out / "sim_vae_sim_test.parquet").is_file() and (out / "sim_vae_sim_test.png").is_file()
    before = (out / "sim_vae_sim_test.parquet").stat().st_mtime_ns
    r = astro("-w", vae_ws, "--seed", 1, "--set", "ztf.embed.n_neighbors=5", "ztf", "embed", "--model", "sim_vae")
    assert r.returncode == 0, r.stderr
    assert "skipped (done)" in r.stdout + r.stderr
    assert (out / "sim_vae_sim_test.parquet").stat().st_mtime_ns == before


@pytest.mark.parametrize("change", [("--set", "ztf.embed.n_neighbors=6"), ("--set", "ztf.embed.min_dist=0.3")])
def test_embed_refuses_other_settings_without_overwrite(vae_ws, astro, change):
    out = vae_ws / "ztf" / "embeddings" / "sim_vae_sim_test.parquet"
    before = out.stat().st_mtime_ns
    err = _error(astro("-w", vae_ws, "--seed", 1, "--set", "ztf.embed.n_neighbors=5", *change,
                       "ztf", "embed", "--model", "sim_vae"))
    assert change[1].split("=")[0] in err and "--overwrite" in err
    assert out.stat().st_mtime_ns == before


def test_embed_of_another_dataset_is_another_file(vae_ws, astro):
    out = vae_ws / "ztf" / "embeddings"
    r = astro("-w", vae_ws, "--seed", 1, "--set", "ztf.embed.n_neighbors=5", "--set", "ztf.embed.min_dist=0.3",
              "ztf", "embed", "--model", "sim_vae", "--dataset", "real")
    assert r.returncode == 0, r.stderr
    assert (out / "sim_vae_real_test.parquet").is_file()


def test_embed_is_quiet_and_a_holdout_set_is_named_as_why_it_cannot_train(tws, astro):
    r = astro("-w", tws, "--seed", 1, "ztf", "embed", "--model", "sim_vae")
    assert r.returncode == 0, r.stderr
    assert "n_jobs value" not in r.stderr
    assert astro("-w", tws, "--seed", 1, "--set", "ztf.prepare.holdout=true", "ztf", "prepare",
                 "--name", "ho").returncode == 0
    err = _error(astro("-w", tws, "ztf", "train", "--dataset", "ho"))
    assert "hold-out set" in err and "val_per_class" not in err


def test_umap_of_three_latents_works_and_of_fewer_is_refused_naming_where():
    """3 objects crashed in UMAP's spectral start (TypeError: Cannot use scipy.linalg.eigh for sparse A with
    k >= N, exit 1), after a raw RuntimeWarning."""
    import warnings

    import numpy as np

    from astrotool.errors import InputError
    from astrotool_ztf.autoencoder import umap_embedding

    latent = np.random.default_rng(0).normal(size=(3, 8))
    umap_embedding(np.random.default_rng(1).normal(size=(6, 8)), 15, 0.1, "euclidean", 0)   # imported, compiled
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no raw library warning either
        xy = umap_embedding(latent, 15, 0.1, "euclidean", 0)
    assert xy.shape == (3, 2) and np.isfinite(xy).all()
    with pytest.raises(InputError, match="at least 3") as e:
        umap_embedding(latent[:2], 15, 0.1, "euclidean", 0, where="sim: the 'val' split")
    assert "sim: the 'val' split" in str(e.value)


def test_embed_of_a_split_with_too_few_objects_is_refused_naming_the_set_and_split(tws, astro):
    assert astro("-w", tws, "--seed", 1, "--set", "ztf.prepare.val_per_class=0", "--set",
                 "ztf.prepare.test_per_class=2", "ztf", "prepare", "--name", "noval").returncode == 0
    err = _error(astro("-w", tws, "ztf", "embed", "--model", "sim_vae", "--dataset", "noval", "--split", "val"))
    assert "noval" in err and "'val' split" in err and "at least 3" in err and "Warning" not in err

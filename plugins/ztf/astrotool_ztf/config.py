"""Configuration of the ``[ztf]`` section (pydantic v2 models).

Packaged defaults are in ``astrotool_ztf/defaults.toml``; override them in a
``--cfg`` file, with ``ASTRO_ZTF__INGEST__BATCH_SIZE=…``,
``--set ztf.ingest.batch_size=…`` or a command flag.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from astrotool.section import FileName, FileNameOrEmpty, OnnxOpset, Section, Seed, check_odd, check_ordered

__docformat__ = "numpy"


class IngestConfig(Section):
    """``[ztf.ingest]``: reading alert files into the workspace."""


    stamp_size: int = Field(63, ge=3, le=255,
                            description="stamp side [pixels], odd (a centre pixel); smaller stamps are NaN-padded, "
                                        "larger ones centre-cropped")
    compression: Literal["none", "low", "medium", "high"] = Field(
        "low", description="HDF5 compression of the stamps: none, lzf, gzip 4, gzip 9")
    batch_size: int = Field(500, ge=1, description="alerts decoded and written at a time (memory bound)")
    keep_history: bool = Field(True, description="keep prv_candidates (jd, fid, magpsf, ...) as a JSON text column")

    @model_validator(mode="after")
    def _check(self) -> "IngestConfig":
        check_odd("stamp_size", self.stamp_size)   # prepare crops at the centre pixel
        return self


class SimulateConfig(Section):
    """``[ztf.simulate]``: labelled alerts drawn with GalSim (:mod:`astrotool_ztf.simulate`)."""

    renamed_keys = {"objects_per_file": "chunk_size"}

    name: FileName = Field("sim", description="file stem: ztf/simulated/<name>_NNNN.parquet, then ingested")
    n_objects: int = Field(500, ge=1, description="objects (an AGN, SN or VS has several alerts)")
    chunk_size: int = Field(250, ge=1, description="objects per alert file (one executor item each)")
    class_fractions: dict[Literal["AGN", "SN", "VS", "asteroid", "bogus"], Annotated[float, Field(ge=0)]] = Field(
        default_factory=lambda: {"AGN": 0.2, "SN": 0.2, "VS": 0.2, "asteroid": 0.2, "bogus": 0.2},
        description="share of the objects in each class (normalised)")
    alerts_per_object: tuple[int, int] = Field((1, 5), description="[min, max] alerts of an AGN, SN or VS "
                                                                 "(asteroids and bogus have one)")
    seeing_fwhm: tuple[float, float] = Field((1.5, 3.0), description="[min, max] PSF FWHM of an epoch [arcsec]")
    template_depth: float = Field(16.0, gt=0, description="template exposures co-added (its noise / sqrt of this)")
    psf_mismatch: float = Field(0.02, ge=0, le=0.1, description="relative FWHM error of the template-to-science "
                                "PSF match (x6 for psf_ring bogus; the factor is kept within [0.5, 2])")
    edge_fraction: float = Field(0.02, ge=0, le=0.25, description="share of alerts cut at a CCD edge (x4 for bogus)")
    stamp_size: int = Field(63, ge=15, le=127, description="stamp side [px]")

    @model_validator(mode="after")
    def _check(self) -> "SimulateConfig":
        check_ordered("alerts_per_object", self.alerts_per_object)
        check_ordered("seeing_fwhm", self.seeing_fwhm)
        if self.alerts_per_object[0] < 1:
            raise ValueError("alerts_per_object: an object has at least 1 alert")
        if self.seeing_fwhm[0] <= 0:
            raise ValueError("seeing_fwhm: a FWHM must be > 0")
        if not sum(self.class_fractions.values()) > 0:
            raise ValueError("class_fractions: at least one class needs a share > 0")
        return self


class PrepareConfig(Section):
    """``[ztf.prepare]``: the training set (:mod:`astrotool_ztf.prepare`)."""

    name: FileName = Field("sim", description="dataset folder: ztf/prepared/<name>")
    inputs: list[str] = Field(["sim_*"], description="alert tables in ztf/alerts: names (NAME of "
                                                     "NAME_alerts.parquet) or glob patterns")
    crop: Literal[21, 33, 45, 63] = Field(21, description="stamp side after the centre crop [px]")
    label_column: str = Field("class", description="column of the alert table holding the class")
    label_map: dict[str, str] = Field(default_factory=dict, description="label -> class (e.g. SIMBAD types)")
    classes: list[str] = Field(default_factory=list, description="classes in label order (default: AGN, SN, VS, "
                                                                 "asteroid, bogus)")
    val_per_class: int = Field(100, ge=0, description="objects per class in the validation split")
    test_per_class: int = Field(100, ge=0, description="objects per class in the test split")
    holdout: bool = Field(False, description="every object in the test split (a set to score models on)")
    compression: Literal["none", "low", "medium", "high"] = "low"

    @model_validator(mode="after")
    def _check(self) -> "PrepareConfig":
        from astrotool_ztf.simulate import CLASSES

        known = list(dict.fromkeys([*self.classes, *CLASSES]))  # a value of another class list: left out
        bad = sorted({v for v in self.label_map.values() if v not in known})
        if bad:
            raise ValueError(f"label_map: {', '.join(map(repr, bad))} is not a class; the classes are "
                             f"{', '.join(known)} (ztf.prepare.classes and the default ones)")
        return self


class TrainConfig(Section):
    """``[ztf.train]``: the stamp classifier (:mod:`astrotool_ztf.model`, :mod:`astrotool_ztf.train`)."""

    dataset: str = Field("sim", description="prepared set name or folder (ztf/prepared/<dataset>)")
    model: FileNameOrEmpty = Field("", description="model name: ztf/models/<model>/ (default: <dataset>_<arch>, with "
                                       "_seed<k> for each of several seeds)")
    arch: Literal["classifier", "temporal", "ae", "vae", "probe"] = Field(
        "classifier", description="what to train: the ALeRCE stamp classifier (first alert), the temporal model "
                                  "(1 to max_alerts alerts), Astorga's (variational) autoencoder, or a probe "
                                  "on a trained autoencoder's frozen latents")
    seeds: list[Seed] = Field(default_factory=list, description="train one model per seed (default: core.seed)")
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=2, description="alerts per optimiser step (ALeRCE: 64)")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate (ALeRCE: 1e-3)")
    weight_decay: float = Field(0.0, ge=0)
    entropy_beta: float = Field(0.5, ge=0, description="weight of the entropy term of the loss (ALeRCE: 0.5)")
    kernel: int = Field(3, ge=1, description="side of the body's convolutions (ALeRCE 3; its staging model 5)")
    dropout: float = Field(0.5, ge=0, lt=1)
    group: Literal["c4", "d4"] = Field("d4", description="cyclic pooling over the 4 rotations (c4) or the "
                                                         "rotations and mirrors (d4)")
    use_features: bool = Field(True, description="the 23 metadata features next to the stamps")
    train_alerts: Literal["all", "first"] = Field("all", description="every alert of the training objects or "
                                                                     "the first of each")
    latent: int = Field(21, ge=1, description="ae, vae: latent size (Astorga: 21)")
    kl_beta: float = Field(1.0, ge=0, description="vae: weight of the KL divergence")
    encoder: str = Field("", description="probe: the autoencoder (model name or folder)")
    probe_hidden: int = Field(64, ge=0, description="probe: hidden units of the MLP; 0 for a linear probe")
    max_alerts: int = Field(5, ge=1, description="temporal: the longest sequence, in alerts")
    hidden: int = Field(64, ge=1, description="temporal: GRU state size")
    patience: int = Field(5, ge=0, description="early-stopping patience [epochs]; 0 = off")
    resume: bool = Field(True, description="continue from the last checkpoint")

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        check_odd("kernel", self.kernel)
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: each seed once, got {self.seeds}")
        return self


class EmbedConfig(Section):
    """``[ztf.embed]``: an autoencoder's latents mapped to 2-D with UMAP (:mod:`astrotool_ztf.autoencoder`)."""

    split: Literal["train", "val", "test"] = Field("test", description="the split embedded (first alerts)")
    n_neighbors: int = Field(15, ge=2, description="UMAP n_neighbors")
    min_dist: float = Field(0.1, ge=0, description="UMAP min_dist")
    metric: str = Field("euclidean", description="UMAP metric")


class EvaluateConfig(Section):
    """``[ztf.evaluate]``: what ``astro ztf evaluate`` scores."""

    split: Literal["train", "val", "test"] = Field("test", description="the split scored (first alerts)")
    dataset: str = Field("", description="prepared set scored, name or folder (default: with --model, the set "
                                         "the models were trained on; else ztf.train.dataset)")


class PredictConfig(Section):
    """``[ztf.predict]``: how ``astro ztf predict`` runs."""

    batch_size: int = Field(256, ge=1, description="alerts per forward pass")
    engine: Literal["torch", "onnxruntime"] = Field(
        "torch", description="torch, or onnxruntime on <model>/model.onnx (astro ztf export of the same weights "
                             "and temperature)")


class ExportConfig(Section):
    """``[ztf.export]``: the ONNX file ``astro ztf export`` writes."""

    opset: OnnxOpset = 17


class ZtfConfig(Section):
    """``[ztf]``: the ZTF plugin."""


    ingest: IngestConfig = Field(default_factory=IngestConfig)
    simulate: SimulateConfig = Field(default_factory=SimulateConfig)
    prepare: PrepareConfig = Field(default_factory=PrepareConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    predict: PredictConfig = Field(default_factory=PredictConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)

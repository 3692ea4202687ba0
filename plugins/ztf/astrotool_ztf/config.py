"""Configuration of the ``[ztf]`` section (pydantic v2 models).

Packaged defaults are in ``astrotool_ztf/defaults.toml``; override them in a
``--cfg`` file, with ``ASTRO_ZTF__INGEST__BATCH_SIZE=…``,
``--set ztf.ingest.batch_size=…`` or a command flag.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__docformat__ = "numpy"


class IngestConfig(BaseModel):
    """``[ztf.ingest]``: reading alert files into the workspace."""

    model_config = ConfigDict(extra="forbid")

    stamp_size: int = Field(63, ge=3, le=255,
                            description="stamp side [pixels]; smaller stamps are NaN-padded, larger ones centre-cropped")
    compression: Literal["none", "low", "medium", "high"] = Field(
        "low", description="HDF5 compression of the stamps: none, lzf, gzip 4, gzip 9")
    batch_size: int = Field(500, ge=1, description="alerts decoded and written at a time (memory bound)")
    keep_history: bool = Field(True, description="keep prv_candidates (jd, fid, magpsf, ...) as a list column")


class ZtfConfig(BaseModel):
    """``[ztf]``: the ZTF plugin."""

    model_config = ConfigDict(extra="forbid")

    ingest: IngestConfig = Field(default_factory=IngestConfig)

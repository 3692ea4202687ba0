"""Configuration of the ``[ztf]`` section (pydantic v2 models).

Packaged defaults are in ``astrotool_ztf/defaults.toml``; override them in a
``--cfg`` file, with ``ASTRO_ZTF__INGEST__BATCH_SIZE=…``,
``--set ztf.ingest.batch_size=…`` or a command flag.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from astrotool.section import Section

__docformat__ = "numpy"


class IngestConfig(Section):
    """``[ztf.ingest]``: reading alert files into the workspace."""


    stamp_size: int = Field(63, ge=3, le=255,
                            description="stamp side [pixels]; smaller stamps are NaN-padded, larger ones centre-cropped")
    compression: Literal["none", "low", "medium", "high"] = Field(
        "low", description="HDF5 compression of the stamps: none, lzf, gzip 4, gzip 9")
    batch_size: int = Field(500, ge=1, description="alerts decoded and written at a time (memory bound)")
    keep_history: bool = Field(True, description="keep prv_candidates (jd, fid, magpsf, ...) as a JSON text column")


class ZtfConfig(Section):
    """``[ztf]``: the ZTF plugin."""


    ingest: IngestConfig = Field(default_factory=IngestConfig)

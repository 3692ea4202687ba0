"""The ZTF step of ``astro demo``: ingest sample alerts (real when available, else synthetic)."""

from __future__ import annotations

import os
from pathlib import Path

__docformat__ = "numpy"


def shared_ztf_data() -> Path | None:
    """Folder of the sample ZTF alerts, if there is one.

    Looked for in ``$ASTRO_SHARED_DATA/ztf``, then ``../shared/data/ztf`` relative
    to the repository root (for a checkout with the plugin installed in
    editable mode) and to the current folder.
    """
    candidates = []
    if os.environ.get("ASTRO_SHARED_DATA"):
        candidates.append(Path(os.environ["ASTRO_SHARED_DATA"]).expanduser() / "ztf")
    repo_root = Path(__file__).resolve().parents[3]
    candidates += [repo_root.parent / "shared" / "data" / "ztf", Path.cwd().parent / "shared" / "data" / "ztf"]
    for folder in candidates:
        if folder.is_dir() and (any(folder.glob("*.avro")) or any(folder.glob("*.parquet"))):
            return folder
    return None


def run(ctx, sample_dir="auto") -> list[str]:
    """Ingest the sample alerts into ``ctx.workspace`` and describe the result.

    Parameters
    ----------
    ctx : astrotool.context.Context
        Context of the demo workspace.
    sample_dir : path-like, "auto" or None
        Folder of alert files; ``"auto"``: :func:`shared_ztf_data`; ``None`` (or
        nothing found): five synthetic alerts written to a temporary folder.

    Returns
    -------
    list of str
        Summary lines.
    """
    import tempfile

    from astrotool_ztf import ALERTS, NAME, STAMPS, synthetic
    from astrotool_ztf.ingest import expand_inputs, ingest_files

    ws = ctx.workspace
    cfg = ctx.section(NAME).ingest
    lines = []
    with tempfile.TemporaryDirectory(prefix="astro-ztf-demo-") as tmp:
        folder = shared_ztf_data() if sample_dir == "auto" else sample_dir
        folder = None if folder is None else Path(folder)
        if folder is None:
            folder = Path(tmp)
            synthetic.write_avro(folder / "synthetic_alerts.avro", synthetic.make_alerts(5, seed=1, small_stamp=2))
            lines.append("ztf: no sample data found (set ASTRO_SHARED_DATA); using 5 synthetic alerts")
        files = expand_inputs([folder])
        for path in files:
            ctx.record.add_input(path)
        for r in ingest_files(files, ws.stage(NAME, ALERTS), ws.stage(NAME, STAMPS), cfg, ctx.map, overwrite=True):
            ctx.record.add_output(r.alerts)
            ctx.record.add_output(r.stamps)
            extra = f", {r.n_stamps_resized} padded" if r.n_stamps_resized else ""
            lines.append(f"ztf: {Path(r.input).name}: {r.n_alerts} alert(s) of {r.n_objects} object(s){extra} -> "
                         f"{Path(r.alerts).relative_to(ws.root)}, {Path(r.stamps).relative_to(ws.root)}")
    return lines

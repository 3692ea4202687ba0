"""The DRE step of ``astro demo``: simulate one tile and run the whole chain on it."""

__docformat__ = "numpy"

SETTINGS = """
# astro demo: one small tile of de Vaucouleurs galaxies with a constant PSF, fitted with DRE's own model
# grid (n = 4 only; the default grid of every index from 0.5 to 6 makes a 2 GB model cube and takes
# minutes to build). Delete these tables for the defaults.
[dre.simulate]
n_tiles = 1
size = 768
n_galaxies = 15
n_stars = 20

[dre.psf]
var_degrees = 0

[dre.models]
index0 = 4.0
nindex = 1
"""
"""The demo's DRE settings, written into the workspace's ``astro.toml``: later commands in the demo workspace
(``astro -w DIR dre run``) use them too."""


def run(ctx) -> list[str]:
    """Simulate a small tile, run detect → psf → cuts → fit → mosaics, compare with the truth."""
    from astrotool_dre import cli
    from astrotool_dre.stages import TILE_STAGES
    from astrotool_dre.truth import workspace_recovery

    toml = ctx.workspace.root / "astro.toml"
    saved = _save_settings(toml)
    if not saved:   # the workspace has dre settings of its own: the demo's hold for this run only
        import tomllib

        sets = [f"dre.{table}.{key}={value}" for table, keys in tomllib.loads(SETTINGS)["dre"].items()
                for key, value in keys.items()]
        ctx.log.warning("%s has [dre] settings of its own: the demo's (%s) are used for this run only, not written "
                        "there", toml, ", ".join(sets))
        ctx.options.set = list(ctx.options.set) + sets
    ctx._config = None
    cli.simulate(None, None, None, None, None)
    results = cli._run_stages(TILE_STAGES, None, {}, desc="dre run")
    g, _ = workspace_recovery(ctx.workspace.root)
    lines = [f"{r['tile']}: {r['detect']}; PSF {r['psf']}; {r['cuts']}; {r['fit']}" for r in results]
    if g:
        lines.append(f"recovery of {g['n_matched']}/{g['n_truth']} galaxies: LOGR within 0.115 dex "
                     f"{g['logr_frac']:.0%}, axis ratio within 0.1 {g['q_frac']:.0%}, angle within 15° "
                     f"{g['angle_frac']:.0%} (q<0.7), flux within 5 % {g['flux_frac']:.0%}")
    lines.append(f"outputs in {ctx.workspace.root / 'dre'} (summary/*.parquet, mosaics/*/*.png)"
                 + (f"; the settings in {toml}" if saved else ""))
    return lines


def _save_settings(toml) -> bool:
    """Append :data:`SETTINGS` to the workspace's ``astro.toml`` unless they are there already; False (nothing
    written) when the file holds dre settings of its own, which the demo's must neither duplicate nor replace."""
    import tomllib

    from astrotool.workspace import atomic_path

    text = toml.read_text(encoding="utf-8") if toml.exists() else ""
    if SETTINGS in text:   # a demo run again with --overwrite
        return True
    try:
        if "dre" in tomllib.loads(text):
            return False
    except tomllib.TOMLDecodeError:
        return False   # the configuration error is said by the first command that reads it
    with atomic_path(toml) as tmp:
        tmp.write_text(text + SETTINGS, encoding="utf-8")
    return True

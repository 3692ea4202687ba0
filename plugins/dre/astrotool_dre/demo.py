"""The DRE step of ``astro demo``: simulate one tile and run the whole chain on it."""

__docformat__ = "numpy"


def run(ctx) -> list[str]:
    """Simulate a small tile, run detect → psf → cuts → fit → mosaics, compare with the truth."""
    from astrotool_dre import cli
    from astrotool_dre.stages import TILE_STAGES
    from astrotool_dre.truth import workspace_recovery

    ctx.options.set = list(ctx.options.set) + [  # the demo tile's PSF is constant, and so is the one fitted
        "dre.simulate.n_tiles=1", "dre.simulate.size=768", "dre.simulate.n_galaxies=15", "dre.simulate.n_stars=20",
        "dre.psf.var_degrees=0"]
    ctx._config = None
    cli.simulate(None, None, None, None, None)
    results = cli._run_stages(TILE_STAGES, None, {}, desc="dre run")
    g, _ = workspace_recovery(ctx.workspace.root)
    lines = [f"{r['tile']}: {r['detect']}; PSF {r['psf']}; {r['cuts']}; {r['fit']}" for r in results]
    if g:
        lines.append(f"recovery of {g['n_matched']}/{g['n_truth']} galaxies: LOGR within 0.115 dex "
                     f"{g['logr_frac']:.0%}, axis ratio within 0.1 {g['q_frac']:.0%}, angle within 15° "
                     f"{g['angle_frac']:.0%} (q<0.7), flux within 5 % {g['flux_frac']:.0%}")
    lines.append(f"outputs in {ctx.workspace.root / 'dre'} (summary/*.parquet, mosaics/*/*.png)")
    return lines

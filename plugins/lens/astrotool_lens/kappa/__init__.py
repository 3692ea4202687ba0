"""``astro lens kappa``: convergence (κ) maps from ellipticity maps, the Astro-Datatón 2024 problem.

One module per task: :mod:`.simulate` draws (ε, κ) map pairs, :mod:`.sources` checks and reads raw maps
and :mod:`.data` packs and reads them, :mod:`.maps` holds the Fourier-space lensing relations,
:mod:`.baseline` the classical reconstructions (Kaiser-Squires, Wiener), :mod:`.model` and :mod:`.train`
the U-Net and its training, :mod:`.predict` and :mod:`.submission` predictions and the files to upload,
:mod:`.metrics` and :mod:`.score` the Datatón's scores, :mod:`.export` ONNX, :mod:`.cli` the commands.

Nothing heavy is imported here.
"""

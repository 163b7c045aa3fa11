"""slnn: how must a single-layer neural network update its weights? A harness that trains,
sweeps, records (MLflow) and reports, to settle it with evidence.

Layout, in the direction data flows: ``slnn.app`` (command line and config) -> ``slnn.core``
(the math, no Hydra or MLflow) -> ``slnn.tracking`` (MLflow) -> ``slnn.report``; ``slnn.sweep``
runs many cells of ``slnn.app.run`` through Hydra.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("slnn")
except PackageNotFoundError:  # a checkout on sys.path without an install
    __version__ = "0+unknown"

"""slnn: how must a single-layer neural network update its weights? A harness that trains,
sweeps, records (MLflow) and reports, to settle it with evidence.

Layout, in the direction data flows: ``slnn.app`` (command line and config) -> ``slnn.core``
(the math, no Hydra or MLflow) -> ``slnn.tracking`` (MLflow) -> ``slnn.report``; ``slnn.sweep``
runs many cells of ``slnn.app.run`` through Hydra.
"""

def __getattr__(name: str) -> str:
    """``slnn.__version__``, looked up when first asked for: at import it would delay the moment
    a command can answer Ctrl-C with one line (``slnn.app.entry``) by the metadata's imports."""
    if name != "__version__":
        raise AttributeError(f"module 'slnn' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("slnn")
    except PackageNotFoundError:  # a checkout on sys.path without an install
        value = "0+unknown"
    globals()["__version__"] = value
    return value

"""The only place slnn touches private Hydra or MLflow APIs. Each use says why no public API does
the job, and which versions it was checked against (hydra-core 1.3.2, mlflow 3.x).
"""

from __future__ import annotations


def split_sweep_arguments(overrides: list) -> list[list[str]]:
    """Every cell of a grid, in the order Hydra's basic sweeper launches them.

    Why private: Hydra exposes the grid expansion only inside ``BasicSweeper``; slnn's sweeper
    must expand exactly as the basic one does (``a,b``, ``range()``, ``glob()``, ...) to validate
    every cell before launching. Checked with hydra-core 1.3.2; a static method since 1.1.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    return [cell for batch in BasicSweeper.split_arguments(overrides, None) for cell in batch]


def dispose_store_connections(client) -> None:
    """Drop a SQL-backed client's pooled connections, so the next call opens a fresh one.

    Why private: after an interrupt a pooled SQLite connection can still hold the write lock, and
    MLflow's public client has no way to reset its pool. Checked with mlflow 3.x, where
    ``MlflowClient._tracking_client.store`` is the SqlAlchemyStore with an ``engine``; any other
    store (HTTP, files) has no engine and nothing is done.
    """
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    engine = getattr(store, "engine", None)
    if engine is not None:
        engine.dispose()


def is_basic_launcher(launcher) -> bool:
    """Whether ``launcher`` is Hydra's basic launcher (jobs one after another, in this process).

    Why private: Hydra's public API gives a sweeper its launcher instance but no way to ask which
    plugin it is; the class lives in ``hydra._internal``. Checked with hydra-core 1.3.2.
    """
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher

    return isinstance(launcher, BasicLauncher)


def hydra_app():
    """Hydra's ``Hydra`` class, whose ``get_help`` formats ``--help`` (``hydra._internal``): slnn
    wraps that method to leave its sweeper's internal keys out of the printed config
    (``slnn.app.completion``). Checked with hydra-core 1.3.8."""
    from hydra._internal.hydra import Hydra

    return Hydra

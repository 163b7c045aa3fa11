"""The only place slnn touches private APIs of Hydra, OmegaConf, MLflow, SQLAlchemy, joblib and
their plugins. Each function says why no public API does the job and which versions it was
checked against; ``tests/test_layout.py`` fails on any such use elsewhere.

``mlflow.store``: MLflow's documented Python API (its module index) holds ``mlflow.store.entities``
and nothing else of ``mlflow.store``; the SQL store, the database helpers and the artifact
repository registry are internals that change between releases, so they are reached only here.
"""

from __future__ import annotations


def omegaconf_yaml_dumper():
    """The YAML dumper class ``OmegaConf.to_yaml`` dumps with (``omegaconf._utils``), so a file
    slnn writes from a plain container reads exactly as one OmegaConf would write.

    Why private: OmegaConf offers ``to_yaml`` on a config only; slnn dumps containers it has
    masked. Checked with omegaconf 2.3.1."""
    from omegaconf._utils import get_omega_conf_dumper

    return get_omega_conf_dumper()


def joblib_launcher_settings_step():
    """Hydra's joblib launcher's own step from its config to ``joblib.Parallel``'s arguments
    (``process_joblib_cfg``, in place); raises ImportError without the plugin.

    Why private: the plugin applies it inside ``launch`` only; slnn needs the same arguments to
    warm up the workers the launcher will reuse. Checked with hydra-joblib-launcher 1.2.0."""
    from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg

    return process_joblib_cfg


def import_mlflow_sql_store() -> None:
    """Import MLflow's SQL tracking store (SQLAlchemy and MLflow's ORM models: the slow part of
    a first store call), so a warm worker has paid for it before its first cell.

    Why private: ``mlflow.store.tracking.sqlalchemy_store`` is internal (see the module's
    docstring); the import has no public trigger short of opening a store. Checked with mlflow
    3.x (3.17.2)."""
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401


def artifact_repository(artifact_uri: str, tracking_uri: str):
    """The artifact repository MLflow uses for ``artifact_uri`` (local folder,
    ``mlflow-artifacts:`` through a server, S3, ...).

    Why private: ``MlflowClient.log_artifacts`` first reads the whole run back only to learn the
    artifact URI the caller already has; the registry function that maps a URI to its
    repository lives in ``mlflow.store.artifact`` (internal). Callers fall back to the client on
    any error. Checked with mlflow 3.x (3.17.2)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)


def forget_sql_store_engine(uri: str):
    """Remove MLflow's cached SQLAlchemy engine for ``uri`` from its class-level map and return
    it (None if it has none), so the caller can dispose of it and a later client makes a new one.

    Why private: ``SqlAlchemyStore._engine_map`` keeps one engine per URI for the life of the
    process and MLflow has no call to drop one; a store file that is renamed into place must
    have no connection left to its scratch name. Checked with mlflow 3.x (3.17.2)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    return SqlAlchemyStore._engine_map.pop(uri, None)


def dispose_mlflow_sql_engines() -> None:
    """Close the pooled connections of every SQLAlchemy engine MLflow has cached in this process
    (its tracking, model registry and jobs stores; their modules only if already imported).

    Why private: each of MLflow's SQL store classes keeps one engine per URI in its class-level
    ``_engine_map`` for the life of the process, which only the interpreter's last garbage
    collection closes; ``slnn.app.shutdown`` skips that collection. Checked with mlflow 3.x
    (3.17.2)."""
    import sys

    stores = ("tracking", "model_registry", "jobs")
    modules = [sys.modules.get(f"mlflow.store.{s}.sqlalchemy_store") for s in stores]
    classes = [c for m in modules if m is not None for c in vars(m).values() if isinstance(c, type)]
    for engine in [e for c in classes for e in list(getattr(c, "_engine_map", {}).values())]:
        try:
            engine.dispose()
        except Exception:  # noqa: BLE001 - at exit: the log stays, and is read back next time
            pass


def on_every_sqlalchemy_engine(event_name: str, listener) -> None:
    """Call ``listener`` on SQLAlchemy's ``event_name`` (``"connect"``, ``"engine_connect"``) of
    every engine of this process, MLflow's own included.

    Why here: the listener is global, on SQLAlchemy's ``Engine`` class, because MLflow makes its
    engines internally and offers no hook to set up their connections (SQLite pragmas) or to
    close them at exit. Checked with SQLAlchemy 2.1.9, mlflow 3.x (3.17.2)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    event.listen(Engine, event_name, listener)


def mlflow_latest_schema_revision() -> str:
    """The newest schema revision (alembic) of MLflow's SQL store that this MLflow knows.

    Why private: ``mlflow.store.db.utils._get_latest_schema_revision``; MLflow checks it when it
    opens a store and offers no public way to ask. Checked with mlflow 3.x (3.17.2)."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    return _get_latest_schema_revision()


def mlflow_sql_tables() -> set[str]:
    """The tables of MLflow's SQL tracking store, as its ORM declares them.

    Why private: ``mlflow.store.db.base_sql_model.Base.metadata``, filled by importing
    ``mlflow.store.tracking.sqlalchemy_store``, is the only list of them. Checked with mlflow
    3.x (3.17.2)."""
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401 - fills Base.metadata
    from mlflow.store.db.base_sql_model import Base

    return set(Base.metadata.tables)


def mlflow_sql_models():
    """MLflow's ORM classes of its SQL tracking store (``SqlRun``, ``SqlTag``, ``SqlParam``,
    ``SqlLatestMetric``, ...), as the module ``mlflow.store.tracking.dbmodels.models``, for
    queries that read many runs at once.

    Why private: ``mlflow.store`` is internal (see the module's docstring) and its table layout
    changes with MLflow's schema migrations; the public ``search_runs`` pages through runs one
    query per page. Checked with mlflow 3.x (3.17.2)."""
    from mlflow.store.tracking.dbmodels import models

    return models

def omegaconf_raw(node, key):
    """What ``node[key]`` of a DictConfig or ListConfig holds as written, unresolved: a child
    DictConfig or ListConfig (None when it is None or missing), else the raw value (an
    interpolation as its string).

    Why private: OmegaConf's public access resolves interpolations, and ``to_container`` copies
    the whole tree; masking credentials in place must read each node as written
    (``Container._get_node``, ``Node._value``, ``_is_none``, ``_is_missing``). Checked with
    omegaconf 2.3.1."""
    from omegaconf import DictConfig, ListConfig

    child = node._get_node(key)
    if isinstance(child, (DictConfig, ListConfig)):
        return None if child._is_none() or child._is_missing() else child
    return child._value() if child is not None else None

def wrap_hydra_completion(wrap) -> None:
    """Replace what Hydra's shell completion offers by ``wrap(original)``, a function of
    ``(self, config_name, line)`` like the original; done once per process.

    Why private: ``CompletionPlugin._query`` is the one method through which every shell's
    completion plugin gets its candidates, and Hydra has no hook to filter them. Checked with
    hydra-core 1.3.8."""
    from hydra.plugins.completion_plugin import CompletionPlugin

    if getattr(CompletionPlugin._query, "slnn", False):
        return
    wrapped = wrap(CompletionPlugin._query)
    wrapped.slnn = True
    CompletionPlugin._query = wrapped

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

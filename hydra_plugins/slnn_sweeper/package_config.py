"""slnn's config package as Hydra reads it, in a wheel and in an editable install alike.

setuptools maps the repository's ``conf/`` to ``slnn.conf`` and ``experiments/`` to its group
``slnn.conf.experiment``. A wheel holds them nested; an editable install reads each package from
its own folder, where Hydra's ``pkg://`` source (a group is a folder of its root) misses the
studies. ``PackageConfigSource`` (``slnnpkg://``) takes a group's subpackage when its folder is
not there; ``SlnnConfigSearchPath`` puts it in place of ``pkg://slnn.conf``, and of nothing else.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import re
from importlib import resources
from typing import List, Optional

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import OmegaConf

CONFIG_PACKAGE = "slnn.conf"
SCHEME = "slnnpkg"
# groups kept in a package of their own (setuptools' package-dir): the import system finds
# them, but listing the root's folder cannot, so they are named here
GROUP_PACKAGES = {CONFIG_PACKAGE: ("experiment",)}
HEADER = re.compile(r"#\s*@(\S+)\s+(\S+)\s*$")  # "# @package _global_", at the top


@functools.lru_cache(maxsize=None)
def _is_package(name: str) -> bool:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.submodule_search_locations is not None


def header(text: str) -> dict:
    """The ``# @key value`` lines a config opens with (blank lines allowed), as Hydra reads them:
    ``{"package": None}`` when there is none."""
    out: dict = {"package": None}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        m = HEADER.match(line)
        if not m:
            break
        out[m.group(1)] = m.group(2)
    return out


class PackageConfigSource(ConfigSource):
    """Hydra's ``pkg://`` source, but a group whose folder is not in its parent is read from the
    parent's subpackage of that name (``slnn.conf.experiment`` for ``experiment/``)."""

    def __init__(self, provider: str, path: str) -> None:
        super().__init__(provider=provider, path=path)
        self.path = self.path.replace("/", ".").rstrip(".")

    @staticmethod
    def scheme() -> str:
        return SCHEME

    def locate(self, config_path: str):
        """The file or folder ``config_path`` names (``experiment/compare.yaml``), or None."""
        try:
            node, package = resources.files(self.path), self.path
        except (ImportError, ValueError, TypeError):
            return None
        for part in [p for p in config_path.split("/") if p]:
            child = node.joinpath(part)
            package = f"{package}.{part}" if package and part.isidentifier() else None
            if not child.is_dir() and package and _is_package(package):
                child = resources.files(package)
            node = child
        return node

    def available(self) -> bool:
        node = self.locate("")
        return node is not None and node.joinpath("__init__.py").is_file()

    def is_group(self, config_path: str) -> bool:
        node = self.locate(config_path)
        return node is not None and node.is_dir()

    def is_config(self, config_path: str) -> bool:
        node = self.locate(yaml_name(config_path))
        return node is not None and node.is_file()

    def load_config(self, config_path: str) -> ConfigResult:
        name = yaml_name(config_path)
        node = self.locate(name)
        if node is None or not node.is_file():
            raise ConfigLoadError(f"Config not found : {name}")
        text = node.read_text(encoding="utf-8")
        return ConfigResult(config=OmegaConf.load(io.StringIO(text)),
                            path=f"{self.scheme()}://{self.path}", provider=self.provider,
                            header=header(text[:512]))

    def list(self, config_path: str, results_filter: Optional[ObjectType]) -> List[str]:
        node = self.locate(config_path)
        if node is None or not node.is_dir():
            return []
        groups = {f.name for f in node.iterdir() if f.is_dir() and f.name != "__pycache__"}
        package = ".".join([self.path, *[p for p in config_path.split("/") if p]])
        groups |= {g for g in GROUP_PACKAGES.get(package, ())
                   if self.is_group(f"{config_path}/{g}")}
        configs = {f.name[:-len(".yaml")] for f in node.iterdir()
                   if f.is_file() and f.name.endswith(".yaml")}
        out = set()
        if results_filter in (None, ObjectType.GROUP):
            out |= groups
        if results_filter in (None, ObjectType.CONFIG):
            out |= configs
        return sorted(out)


def yaml_name(config_path: str) -> str:
    return config_path if config_path.endswith(".yaml") else f"{config_path}.yaml"


class SlnnConfigSearchPath(SearchPathPlugin):
    """``pkg://slnn.conf`` (slnn-train's own config) read by ``PackageConfigSource``; any other
    app's search path is left as it is."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for element in search_path.get_path():
            if element.path.rstrip("/") in (f"pkg://{CONFIG_PACKAGE}",
                                             f"pkg://{CONFIG_PACKAGE.replace('.', '/')}"):
                element.path = f"{SCHEME}://{CONFIG_PACKAGE}"

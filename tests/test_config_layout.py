"""The design card's top level: the Hydra config in ``conf/`` and the named studies in
``experiments/``, mapped into the package as ``slnn.conf`` and ``slnn.conf.experiment`` and found
through ``importlib.resources`` and ``pkg://slnn.conf`` (``.ci/wheel_check`` checks a built wheel;
these check the install the tests run in). Run with `python -m pytest tests/test_config_layout.py`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

import hydra
import pytest
from hydra.core.global_hydra import GlobalHydra

import slnn
from slnn.app.schema import CONF_PACKAGE

ROOT = Path(__file__).resolve().parent.parent
SLNN_TRAIN = Path(sys.executable).with_name("slnn-train")
STUDIES = sorted(p.stem for p in (ROOT / "experiments").glob("*.yaml"))


@pytest.fixture(scope="module")
def loader():
    with hydra.initialize_config_module(CONF_PACKAGE, version_base="1.3"):
        yield GlobalHydra.instance().config_loader()


def test_the_top_level_is_the_cards_and_the_package_holds_no_config():
    assert (ROOT / "conf" / "config.yaml").is_file() and len(STUDIES) >= 5
    assert not (Path(slnn.__file__).parent / "conf").exists()
    tracked = subprocess.run(["git", "ls-files", "slnn/conf"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout
    assert tracked == ""


def test_importlib_resources_finds_a_study_inside_the_package():
    study = resources.files("slnn.conf.experiment").joinpath("guide_vs_correct.yaml")
    assert study.read_text() == (ROOT / "experiments" / "guide_vs_correct.yaml").read_text()
    primary = resources.files(CONF_PACKAGE).joinpath("config.yaml")
    assert primary.read_text() == (ROOT / "conf" / "config.yaml").read_text()


def test_help_lists_exactly_the_studies_in_experiments():
    out = subprocess.run([str(SLNN_TRAIN), "--help"], capture_output=True, text=True,
                         check=True, cwd=ROOT / "tests").stdout
    line = re.search(r"^experiment: (.*)$", out, re.M)
    assert line, out
    assert line.group(1).split(", ") == STUDIES


def test_hydra_reads_every_group_from_the_package(loader):
    from slnn.app.keys import GroupChecker

    assert loader.get_group_options("experiment") == STUDIES
    for group in ("data", "model", "train"):
        files = sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml"))
        assert set(files) <= set(loader.get_group_options(group)), group
    checker = GroupChecker()
    assert {"experiment", "data", "model", "train", "update"} <= set(checker.names())
    assert checker("experiment") and not checker("experiments")
    cfg = hydra.compose("config", overrides=["+experiment=guide_reproduction"],
                        return_hydra_config=True)
    assert cfg.hydra.sweeper.params["update"] == "input,kronecker"  # set by the study's file only


def test_pyproject_lists_every_package_there_is():
    """setuptools is given the packages by name (conf/ and experiments/ are not below slnn/, so
    no finder names them): the list must not miss a package added later."""
    from setuptools import find_namespace_packages

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = find_namespace_packages(str(ROOT), include=["slnn", "slnn.*", "hydra_plugins",
                                                        "hydra_plugins.*"])
    conf = ["slnn.conf", "slnn.conf.experiment"] + [
        f"slnn.conf.{p.name}" for p in (ROOT / "conf").iterdir()
        if p.is_dir() and p.name != "__pycache__"]
    found = [p for p in found if not p.endswith("__pycache__")]
    assert sorted(tool["packages"]) == sorted(found + conf)
    assert tool["package-dir"] == {"slnn.conf": "conf", "slnn.conf.experiment": "experiments"}


def test_a_search_path_of_another_app_is_left_alone():
    from hydra_plugins.slnn_sweeper.package_config import SCHEME, SlnnConfigSearchPath

    class Element:
        def __init__(self, path):
            self.path = path

    class SearchPath:
        elements = [Element("pkg://hydra.conf"), Element("pkg://otherapp.conf"),
                    Element("pkg://slnn.conf")]

        def get_path(self):
            return self.elements

    sp = SearchPath()
    SlnnConfigSearchPath().manipulate_search_path(sp)
    assert [e.path for e in sp.elements] == ["pkg://hydra.conf", "pkg://otherapp.conf",
                                             f"{SCHEME}://slnn.conf"]

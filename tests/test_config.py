"""Tests for slnn.app.schema and the `slnn-train` command line: run with
`python -m pytest tests/test_config.py -q`.

Configs are composed as users compose them (Hydra's compose over conf/ with small overrides); the
command line runs as a real subprocess in `tmp_path`.
"""

import io
import json
import re
from importlib import resources

import pytest
from omegaconf import OmegaConf

import slnn.app.schema
from slnn.core.activations import ACTIVATIONS
from slnn.app.schema import Config, ConfigError, config_hash, flatten, identity, to_config
from slnn.core.trainer import INITS, SAMPLINGS

GROUPS = ("data", "model", "update", "train")


def _presets(group: str) -> dict:
    """The YAML presets of one of slnn's config groups, by name, as the install ships them
    (``update`` has none: its options are the registered rules)."""
    try:
        folder = slnn.app.schema.conf_group(group)
    except ModuleNotFoundError:
        return {}
    return {f.name.removesuffix(".yaml"): f for f in folder.iterdir() if f.name.endswith(".yaml")}


def _choices(group: str) -> list[str]:
    """The options of a config group as Hydra sees them: files in conf/<group>/ and the entries
    slnn registers in Hydra's ConfigStore from its registries."""
    from hydra.core.config_store import ConfigStore

    stored = ConfigStore.instance().repo.get(group, {})
    return sorted(set(_presets(group)) | {name.removesuffix(".yaml") for name in stored})


def _yaml(file) -> dict:
    # OmegaConf's loader, as Hydra reads conf/ (PyYAML alone reads 1.0e4 as a string)
    return OmegaConf.to_container(OmegaConf.load(io.StringIO(file.read_text()))) or {}


def _values(group: str, choice: str) -> dict:
    """What choosing ``group=choice`` sets: its YAML file, or the node slnn stored for it."""
    if choice in _presets(group):
        return _yaml(_presets(group)[choice])
    from hydra.core.config_store import ConfigStore

    return OmegaConf.to_container(ConfigStore.instance().repo[group][f"{choice}.yaml"].node)


def _error(compose, *overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        to_config(compose(*overrides))
    msg = str(info.value)
    assert msg and "\n" not in msg, f"not one line: {msg!r}"
    return msg


# --- the shipped configs are valid ---

def test_default_config_validates_to_the_yaml_values(compose):
    c = to_config(compose())
    assert isinstance(c, Config)
    primary = _yaml(resources.files(slnn.app.schema.CONF_PACKAGE).joinpath("config.yaml"))
    defaults = {k: v for d in primary["defaults"] if isinstance(d, dict) for k, v in d.items()
                if k in GROUPS}  # not "override hydra/...": Hydra's own groups
    assert set(defaults) == set(GROUPS)
    for group, choice in defaults.items():
        for key, value in _values(group, choice).items():
            assert getattr(getattr(c, group), key) == value, f"{group}.{key}"
    assert c.seed == 0 and c.optim.lr == 0.1  # the schema's defaults, written once


@pytest.mark.parametrize("group", GROUPS)
def test_every_choice_composes_and_carries_its_file_values(compose, group):
    for choice in _choices(group):
        values = _values(group, choice)
        extra = {("data", "csv"): ["data.path=x.csv", "data.target=y"],
                 ("update", "custom"): ["update.fn=my_rules.py:my_step"]}.get((group, choice), [])
        c = to_config(compose(f"{group}={choice}", *extra))
        section = getattr(c, group)
        for key, value in values.items():
            if value == "???":
                continue
            assert getattr(section, key) == value, f"{group}={choice}: {key}"


# --- each bad value fails with one line that names the key ---

@pytest.mark.parametrize("overrides, needles", [
    (["optim.lr=-1"], ["optim.lr", "> 0", "-1"]),
    (["optim.lr=0"], ["optim.lr", "> 0"]),
    (["optim.lr=nan"], ["optim.lr", "> 0"]),
    (["data.split=[0.5,0.3,0.3]"], ["data.split", "1.1", "not 1"]),
    (["data.split=[0.6,0.1,0.1]"], ["data.split", "0.8", "not 1"]),
    (["data.split=[0.5,0.5]"], ["data.split", "3 fractions"]),
    (["data.split=[1.2,-0.1,-0.1]"], ["data.split", ">= 0"]),
    (["data.split=[0,0.5,0.5]"], ["data.split", "training"]),
    (["train.epochs=0"], ["train.epochs", "> 0"]),
    (["train.batch_size=0"], ["train.batch_size", "> 0"]),
    (["train.patience=0"], ["train.patience", "> 0"]),
    (["data=csv"], ["data=csv", "data.path", "data.target"]),
    (["data=csv", "data.target=label"], ["data=csv", "data.path"]),
    (["data=csv", "data.path=my.csv"], ["data=csv", "data.target"]),
    (["data.guide_scaling=true"], ["data.standardize", "data.guide_scaling"]),
    (["seed=-1"], ["seed", ">= 0", "-1"]),
    (["tracking.experiment="], ["tracking.experiment"]),
    (["tracking.max_metric_points=0"], ["tracking.max_metric_points"]),
])
def test_bad_value_is_one_line_naming_the_key(compose, overrides, needles):
    msg = _error(compose, *overrides)
    for needle in needles:
        assert needle in msg, (needle, msg)


@pytest.mark.parametrize("key, registry", [
    ("model.activation", ACTIVATIONS), ("train.sampling", SAMPLINGS), ("model.init", INITS),
])
def test_unknown_choice_lists_the_sorted_valid_names(compose, key, registry):
    msg = _error(compose, f"{key}=nonesuch")
    assert key in msg and "nonesuch" in msg
    listed = re.search(r"\[(.*?)\]", msg).group(0)
    assert listed == str(sorted(registry))


def test_guide_presets_validate_when_combined(compose):
    # iris_guide turns standardize off, so guide_scaling alone is not the conflict
    c = to_config(compose("data=iris_guide", "model=guide", "train=guide"))
    assert c.data.guide_scaling and not c.data.standardize and c.data.seed is None
    assert c.model.activation == "guide_tanh" and c.train.target_val_loss == 0.1


# --- the command line: a bad override is one line on stderr, and nothing starts ---

def _assert_one_line_and_nothing_started(proc, tmp_path, *needles):
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].strip(), proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "mlruns").exists()
    return lines[0]


@pytest.mark.parametrize("override, needles", [
    ("optim.lr=-1", ["optim.lr"]),
    ("optim.lr=abc", ["optim.lr", "abc"]),
    ("data=foo", ["data", "foo"]),
    ("update=foo", ["update", "foo"]),
    ("optim.foo=1", ["optim.foo"]),
])
def test_cli_bad_override_is_one_stderr_line(slnn_train, tmp_path, override, needles):
    proc = slnn_train([override], cwd=tmp_path)
    line = _assert_one_line_and_nothing_started(proc, tmp_path, *needles)
    group = override.split("=")[0]
    if group in GROUPS:  # an unknown choice lists every valid one
        for choice in _choices(group):
            assert re.search(rf"\b{re.escape(choice)}\b", line), (choice, line)
    assert not (tmp_path / "outputs").exists()  # failed before Hydra started the job


def test_python_dash_m_gives_the_same_one_line(slnn_train, tmp_path):
    script = slnn_train(["update=foo"], cwd=tmp_path)
    module = slnn_train(["update=foo"], cwd=tmp_path, module=True)
    assert module.returncode == script.returncode != 0
    assert module.stderr.strip() == script.stderr.strip()
    _assert_one_line_and_nothing_started(module, tmp_path)


def test_cli_missing_csv_is_one_line_and_opens_no_store(slnn_train, tmp_path):
    # passes the config check, fails when the data set is built: still one line, no run
    proc = slnn_train(["data=csv", "data.path=missing.csv", "data.target=y"], cwd=tmp_path)
    _assert_one_line_and_nothing_started(proc, tmp_path, "missing.csv")


def test_cli_help_lists_every_group_and_its_choices(slnn_train, tmp_path):
    proc = slnn_train(["--help"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    section = re.search(r"^== Config groups.*?==\n(.*?)^==", proc.stdout, re.M | re.S).group(1)
    listed = {}
    for line in section.splitlines():
        if ":" in line:
            group, choices = line.split(":", 1)
            listed[group.strip()] = sorted(c.strip() for c in choices.split(","))
    for group in GROUPS:
        assert listed.get(group) == _choices(group), group
    # the resolved config follows: every top-level key of the schema is shown
    for key in (*GROUPS, "seed"):
        assert re.search(rf"^{key}:", proc.stdout, re.M), key
    assert not (tmp_path / "mlflow.db").exists()


# --- config_hash, identity, flatten ---

@pytest.fixture(scope="module")
def default_cfg(compose):
    return compose()


def test_config_hash_is_equal_for_equal_configs(compose):
    a = compose("data=iris_petal", "optim.lr=0.5", "seed=3")
    b = compose("seed=3", "optim.lr=0.5", "data=iris_petal")  # same values, another order
    assert a is not b
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) == config_hash(OmegaConf.to_container(a, resolve=True))
    # lr is typed float: 1 and 1.0 are the same run
    assert config_hash(compose("optim.lr=1")) == config_hash(compose("optim.lr=1.0"))
    h = config_hash(a)
    assert re.fullmatch(r"[0-9a-f]{16}", h)


@pytest.mark.parametrize("override", [
    "optim.lr=0.2", "seed=1", "model.activation=tanh", "update=kronecker", "data=iris_petal",
    "data=iris_guide", "data.split=[0.6,0.2,0.2]", "train.epochs=7", "model.init=glorot",
])
def test_config_hash_changes_with_what_a_run_computes(compose, default_cfg, override):
    assert config_hash(compose(override)) != config_hash(default_cfg)


@pytest.mark.parametrize("override", [
    "tracking.uri=sqlite:////elsewhere/other.db", "tracking.experiment=other", "tracking.plot=false",
    "tracking.max_metric_points=7", "sweep.force=true", "sweep.report=false",
])
def test_config_hash_ignores_where_a_run_is_recorded(compose, default_cfg, override):
    cfg = compose(override)
    assert OmegaConf.to_container(cfg) != OmegaConf.to_container(default_cfg)  # it did change
    assert config_hash(cfg) == config_hash(default_cfg)


def test_identity_drops_tracking_and_sweep_only(default_cfg):
    full = OmegaConf.to_container(default_cfg, resolve=True)
    ident = identity(default_cfg)
    assert "tracking" in full and "sweep" in full
    assert set(ident) == set(full) - {"tracking", "sweep"}
    assert all(ident[k] == full[k] for k in ident if k != "update")
    # a built-in rule has no update.fn: its hash is what it was before update.fn existed
    assert full["update"] == {"rule": "input", "fn": None} and ident["update"] == {"rule": "input"}


def test_flatten_gives_dotted_keys_and_json_lists():
    d = {"optim": {"lr": 0.1}, "data": {"split": [0.5, 0.25, 0.25], "path": None,
                                        "sub": {"deep": True}}, "seed": 3}
    assert flatten(d) == {"optim.lr": "0.1", "data.split": "[0.5, 0.25, 0.25]",
                          "data.path": "None", "data.sub.deep": "True", "seed": "3"}
    assert json.loads(flatten(d)["data.split"]) == [0.5, 0.25, 0.25]


def test_flatten_of_a_composed_config_covers_every_leaf(default_cfg):
    full = OmegaConf.to_container(default_cfg, resolve=True)
    flat = flatten(full)
    n_leaves = sum(len(v) if isinstance(v, dict) else 1 for v in full.values())
    assert len(flat) == n_leaves  # no section in conf/ nests deeper than one level
    for key, value in flat.items():
        node = full
        for part in key.split("."):
            node = node[part]
        assert value == (json.dumps(node) if isinstance(node, list) else str(node))

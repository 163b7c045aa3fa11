"""The sweep's grid: the shortcut (compose each choice of groups once, set each cell's values from
a cache) makes exactly the cells the general path makes (compose, copy, update, ``to_object``),
and those Hydra's own ``compose`` makes: the same config, container, hash and data."""

from __future__ import annotations

import dataclasses
import pickle

import hydra
import pytest
from hydra import compose
from omegaconf import OmegaConf

import slnn.app.schema
from slnn.app.schema import config_hash, to_config
from slnn.sweep import grid

STUDY = ["+experiment=guide_vs_correct"]

MINE = """# @package _global_
# A study of one's own: a preset of the data group and a study in a folder on hydra.searchpath.
train:
  epochs: 3
optim:
  lr: 0.2
hydra:
  sweeper:
    params:
      data: tiny_blobs,iris_petal
      optim.lr: 0.05,0.5
"""

TINY_BLOBS = """# blobs, smaller
name: blobs
n_samples: 60
n_features: 2
n_classes: 3
"""


@pytest.fixture(scope="module")
def hydra_ctx():
    with hydra.initialize_config_module(slnn.app.schema.CONF_PACKAGE, version_base="1.3"):
        yield


@pytest.fixture
def user_conf(tmp_path):
    """A folder for hydra.searchpath with a study (experiment/mine) and a data preset."""
    (tmp_path / "myconf" / "experiment").mkdir(parents=True)
    (tmp_path / "myconf" / "data").mkdir()
    (tmp_path / "myconf" / "experiment" / "mine.yaml").write_text(MINE)
    (tmp_path / "myconf" / "data" / "tiny_blobs.yaml").write_text(TINY_BLOBS)
    return f"file://{tmp_path}/myconf"


def assert_same_cells(fast: list, slow: list) -> None:
    assert len(fast) == len(slow) > 0
    for f, s in zip(fast, slow):
        assert f.overrides == s.overrides
        assert f.hash == s.hash, f.overrides
        assert f.config == s.config, f.overrides
        assert f.container == s.container, f.overrides
        assert f.data_digest == s.data_digest, f.overrides
        # what a job runs, the Config as a chunk file gives it back, is the general path's
        assert pickle.loads(pickle.dumps(f.config)) == s.config
        assert dataclasses.asdict(f.config) == s.container


@pytest.mark.slow  # every cell of a study composed both ways: 4 s of the fast tier
def test_the_shortcut_makes_the_general_paths_cells_for_a_study_narrowed_and_extended(hydra_ctx):
    # slnn's study (groups data= and update= swept), narrowed and extended on the command line:
    # group choices (train=), value overrides, +key= and ++key=
    args = [*STUDY, "train=default,guide", "model.activation=sigmoid,tanh", "seed=0,3",
            "optim.lr=0.5,1", "+data.path=null", "++train.epochs=7,9"]
    config = compose("config", overrides=STUDY, return_hydra_config=True)
    cells = grid.enumerate_cells(config, args)
    assert len(cells) == 3 * 2 * 2 * 2 * 2 * 2 * 2  # data x update x train x act x seed x lr x epochs
    fast = grid.compose_cells("config", cells)
    slow = grid.compose_cells("config", cells, shortcut=False)
    assert sum(c.shortcut for c in fast) == len(cells)  # every cell took the shortcut
    assert not any(c.shortcut for c in slow)
    assert_same_cells(fast, slow)
    assert len({c.hash for c in fast}) == len(cells)  # the values did reach the cells
    # and both are what Hydra's compose makes of each cell on its own
    for cell, got in list(zip(cells, fast))[::7]:
        ref = compose("config", overrides=cell)
        assert got.hash == config_hash(ref)
        assert got.config == to_config(ref)
        assert got.container == OmegaConf.to_container(ref, resolve=True)


def test_the_shortcut_makes_the_general_paths_cells_for_a_study_on_a_user_searchpath(
        hydra_ctx, user_conf):
    searchpath = [user_conf]
    sp = f"hydra.searchpath=[{user_conf}]"
    config = compose("config", overrides=["+experiment=mine", sp], return_hydra_config=True)
    cells = grid.enumerate_cells(config, ["+experiment=mine", sp, "update=input,kronecker",
                                          "seed=range(2)", "train.batch_size=1,4"])
    assert len(cells) == 2 * 2 * 2 * 2 * 2
    fast = grid.compose_cells("config", cells, searchpath)
    slow = grid.compose_cells("config", cells, searchpath, shortcut=False)
    assert all(c.shortcut for c in fast)
    assert_same_cells(fast, slow)
    tiny = [c for c in fast if "data=tiny_blobs" in c.overrides]
    assert tiny and all(c.config.data.n_samples == 60 and c.config.train.epochs == 3
                        for c in tiny)  # the user's preset and study were composed
    for cell, got in list(zip(cells, fast))[::5]:
        ref = compose("config", overrides=cell)
        assert got.hash == config_hash(ref) and got.config == to_config(ref)


def test_cells_the_shortcut_cannot_vouch_for_take_the_general_path(hydra_ctx):
    # ~key (which hydra.compose refuses on this schema's null keys), + and ++ of an existing leaf:
    # each one's value is found once on a copy of the base, then cached; an override inside
    # another's subtree (where their order decides) takes the general path
    cells = [[*STUDY, "data=blobs", "~sweep.state", "seed=1"],
             [*STUDY, "data=iris", "~tracking.log_model", "optim.lr=1"],
             ["update=kronecker", "data.n_samples=50", "++data.seed=4"],
             ["data=blobs", "+data.target=null", "train.epochs=3"],
             ["data=blobs", "++data.seed=4", "data.seed=5"]]
    fast = grid.compose_cells("config", cells)
    # (before assert_same_cells, which makes every cell's cfg)
    assert [c.shortcut for c in fast] == [True, True, True, True, False]
    assert fast[4].config.data.seed == 5  # the later override wins, as in Hydra
    assert_same_cells(fast, grid.compose_cells("config", cells, shortcut=False))


@pytest.mark.parametrize("bad, says", [("optim.lr=fast", "optim.lr"), ("seed=-1", "seed must be >= 0"),
                                       ("model.activation=tanhh", "did you mean tanh?"),
                                       ("~data.gate", "data.gate"), ("model.nope=1", "nope")])
def test_a_bad_value_fails_with_one_line_naming_its_cell(hydra_ctx, capsys, bad, says):
    cells = [["seed=0"], ["seed=1", bad]]
    with pytest.raises(SystemExit) as e:
        grid.compose_cells("config", cells)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0] and f"(in the cell seed=1 {bad})" in err[0], err


def test_a_job_gets_its_cells_typed_as_validated_with_the_password_put_back(hydra_ctx, tmp_path,
                                                                           monkeypatch):
    from slnn.app.schema import Config
    from slnn.sweep import worker
    from slnn.sweep.orchestrator import _for_job
    from slnn.sweep.state import SweepState

    uri = "postgresql://me:s3cret@db.example/mlflow"
    [cell] = grid.compose_cells("config", [["data=blobs", "seed=2", f"tracking.uri={uri}"]])
    cell.folder = "0000-blobs"
    (tmp_path / "jobs").mkdir()
    chunk = tmp_path / "jobs" / "chunk_0000.pkl"
    chunk.write_bytes(pickle.dumps([_for_job(cell)]))
    assert b"s3cret" not in chunk.read_bytes()  # the sweep's folder holds no password

    def checked_again(self):
        raise AssertionError("a job validated its cell again")

    monkeypatch.setattr(Config, "__post_init__", checked_again)
    [got] = worker._load_chunk(SweepState(dir=str(tmp_path), uri=uri), 0)
    assert got.config == cell.config and got.config.tracking.uri == uri
    assert (got.hash, got.folder, got.container) == (cell.hash, cell.folder, None)
    assert cell.config.tracking.uri == uri  # the launcher's own cell was not masked in place

"""Tests for slnn.data: run with `python -m pytest tests/test_data.py -q`."""

import re

import numpy as np
import pytest
from sklearn.datasets import load_digits, load_iris

from slnn.core.data import DATASETS, GATES, DataError, Dataset, load_dataset
from slnn.core.errors import ConfigError


def _all_x(ds: Dataset) -> np.ndarray:
    return np.vstack([ds.x_train, ds.x_val, ds.x_test])


# --- splitting ---

def test_iris_guide_split_is_75_37_38():
    ds = load_dataset("iris", split=(0.5, 0.25, 0.25), seed=0)
    assert (ds.n_train, ds.n_val, ds.n_test) == (75, 37, 38)
    assert ds.x_train.shape == (75, 4) and ds.t_val.shape == (37, 3) and ds.x_test.shape == (38, 4)
    assert ds.n_features == 4 and ds.n_classes == 3
    assert ds.class_names == ("setosa", "versicolor", "virginica")
    assert ds.feature_names == tuple(load_iris().feature_names)
    for x in (ds.x_train, ds.t_train, ds.x_val, ds.x_test):
        assert x.dtype == np.float64


def test_split_is_a_shuffled_partition_of_the_raw_rows():
    raw = load_iris()
    ds = load_dataset("iris", standardize=False, seed=3)
    rows = _all_x(ds)
    # every raw row appears exactly once (iris has duplicate rows, so compare sorted multisets)
    assert np.array_equal(np.unique(rows, axis=0, return_counts=True)[1],
                          np.unique(raw.data, axis=0, return_counts=True)[1])
    assert np.array_equal(np.sort(rows, axis=0), np.sort(raw.data, axis=0))
    # shuffled with default_rng(seed), as the brief specifies
    order = np.random.default_rng(3).permutation(150)
    np.testing.assert_array_equal(ds.x_train, raw.data[order[:75]])
    np.testing.assert_array_equal(ds.t_train.argmax(1), raw.target[order[:75]])
    np.testing.assert_array_equal(ds.x_test, raw.data[order[112:]])


def test_different_seeds_shuffle_differently_and_same_seed_repeats():
    a, b, c = (load_dataset("iris", seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)


def test_empty_val_and_test_splits_keep_feature_width():
    ds = load_dataset("iris", split=(1.0, 0.0, 0.0), standardize=False)
    assert ds.n_train == 150 and ds.x_val.shape == (0, 4) and ds.x_test.shape == (0, 4)
    assert ds.t_test.shape == (0, 3)


@pytest.mark.parametrize("split", [(0.5, 0.5), (0.5, 0.25, 0.3), (0.0, 0.5, 0.5),
                                   (1.2, -0.1, -0.1), "abc", (0.5, float("nan"), 0.5)])
def test_bad_split_is_rejected(split):
    # the spec checks its own values: one line that names the key and an example
    with pytest.raises(ConfigError, match=r"^data\.split.*set e\.g\. data\.split=\[0\.5,0\.25,0\.25\]$"):
        load_dataset("iris", split=split)


def test_split_leaving_a_requested_split_empty_is_rejected():
    # floors leave at least one test row whenever split[2] > 0, except within the sum tolerance
    with pytest.raises(DataError, match="empty test split"):
        load_dataset("blobs", n_samples=10, n_classes=2, split=(0.5, 0.5, 1e-7))
    with pytest.raises(DataError, match="empty train split"):
        load_dataset("blobs", n_samples=3, n_classes=3, split=(0.2, 0.4, 0.4))


# --- targets ---

@pytest.mark.parametrize("name", ["iris", "digits", "blobs"])
def test_one_hot_rows_sum_to_one_and_argmax_is_the_label(name):
    ds = load_dataset(name, standardize=False, seed=0)
    for t in (ds.t_train, ds.t_val, ds.t_test):
        assert set(np.unique(t)) <= {0.0, 1.0}
        np.testing.assert_array_equal(t.sum(axis=1), 1.0)
    if name == "iris":
        raw = load_iris()
        order = np.random.default_rng(0).permutation(150)
        np.testing.assert_array_equal(ds.t_val.argmax(1), raw.target[order[75:112]])


# --- preprocessing ---

def test_standardize_uses_training_statistics_only():
    raw = load_dataset("iris", standardize=False, seed=5)
    ds = load_dataset("iris", standardize=True, seed=5)
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(ds.x_train.std(axis=0), 1.0, atol=1e-12)
    mean, std = raw.x_train.mean(axis=0), raw.x_train.std(axis=0)
    np.testing.assert_allclose(ds.x_val, (raw.x_val - mean) / std)
    np.testing.assert_allclose(ds.x_test, (raw.x_test - mean) / std)
    # and not whole-data statistics: val/test are not themselves centred
    whole = _all_x(raw)
    assert not np.allclose(ds.x_test, (raw.x_test - whole.mean(0)) / whole.std(0))


def test_standardize_centres_but_does_not_divide_a_constant_column(tmp_path):
    f = tmp_path / "const.csv"
    f.write_text("a,b,y\n" + "".join(f"{i},7,{i % 2}\n" for i in range(8)))
    ds = load_dataset("csv", path=str(f), target="y", split=(1, 0, 0))
    assert np.all(np.isfinite(ds.x_train))
    np.testing.assert_array_equal(ds.x_train[:, 1], 0.0)


def test_guide_scaling_matches_hand_computation_on_whole_iris():
    raw = load_iris().data
    expected = np.empty_like(raw)
    for j in range(raw.shape[1]):
        col = raw[:, j]
        dev = col - col.mean()
        expected[:, j] = dev / np.abs(dev).max() * 0.475 + 0.5
    ds = load_dataset("iris", split=(1, 0, 0), standardize=False, guide_scaling=True, seed=0)
    order = np.random.default_rng(0).permutation(150)
    np.testing.assert_allclose(ds.x_train, expected[order], rtol=0, atol=1e-12)
    assert ds.x_train.min() >= 0.025 - 1e-12 and ds.x_train.max() <= 0.975 + 1e-12
    for j in range(4):
        col = ds.x_train[:, j]
        assert np.isclose(col.min(), 0.025) or np.isclose(col.max(), 0.975)


def test_guide_scaling_is_computed_before_the_split():
    whole = load_dataset("iris", split=(1, 0, 0), standardize=False, guide_scaling=True, seed=2)
    parts = load_dataset("iris", standardize=False, guide_scaling=True, seed=2)
    order = np.random.default_rng(2).permutation(150)
    np.testing.assert_allclose(parts.x_test, whole.x_train[np.argsort(order)][order[112:]])
    # scaling the train part on its own would give different values
    raw_train = load_dataset("iris", standardize=False, seed=2).x_train
    dev = raw_train - raw_train.mean(0)
    assert not np.allclose(parts.x_train, 0.5 + 0.475 * dev / np.abs(dev).max(0))


def test_guide_scaling_leaves_a_constant_column_at_one_half(tmp_path):
    f = tmp_path / "const.csv"
    f.write_text("a,b,y\n1,7,p\n2,7,q\n5,7,p\n")
    ds = load_dataset("csv", path=str(f), target="y", split=(1, 0, 0), standardize=False,
                      guide_scaling=True)
    np.testing.assert_array_equal(ds.x_train[:, 1], 0.5)


def test_neither_scaling_gives_raw_values():
    ds = load_dataset("digits", standardize=False, seed=0)
    assert _all_x(ds).min() == 0.0 and _all_x(ds).max() == 16.0


def test_standardize_and_guide_scaling_together_is_an_error():
    with pytest.raises(ConfigError, match="pick one"):
        load_dataset("iris", standardize=True, guide_scaling=True)


# --- individual data sets ---

def test_iris_petal_has_two_petal_features():
    ds = load_dataset("iris_petal", standardize=False, split=(1, 0, 0))
    assert ds.n_features == 2 and ds.n_classes == 3
    assert ds.feature_names == ("petal length (cm)", "petal width (cm)")
    order = np.random.default_rng(0).permutation(150)
    np.testing.assert_array_equal(ds.x_train, load_iris().data[order][:, 2:4])


def test_digits_shapes():
    ds = load_dataset("digits")
    assert ds.n_features == 64 and ds.n_classes == 10
    assert ds.n_train + ds.n_val + ds.n_test == len(load_digits().target) == 1797
    assert (ds.n_train, ds.n_val) == (898, 449)
    assert ds.class_names == tuple(str(d) for d in range(10))


def test_blobs_deterministic_by_seed_and_shaped_as_asked():
    kw = dict(n_samples=90, n_features=5, n_classes=4, separation=2.0, standardize=False)
    a, b, c = (load_dataset("blobs", seed=s, **kw) for s in (7, 7, 8))
    for x, y in [(a.x_train, b.x_train), (a.t_test, b.t_test)]:
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(_all_x(a), _all_x(c))
    assert a.n_features == 5 and a.n_classes == 4 and a.n_train + a.n_val + a.n_test == 90
    assert a.feature_names == tuple(f"x{j}" for j in range(5))
    assert a.class_names == ("c0", "c1", "c2", "c3")
    # round-robin labels: 90 = 4 * 22 + 2, so class counts are 23, 23, 22, 22
    counts = np.vstack([a.t_train, a.t_val, a.t_test]).sum(axis=0)
    np.testing.assert_array_equal(counts, [23, 23, 22, 22])


def test_blobs_are_separable_when_far_apart():
    ds = load_dataset("blobs", n_samples=300, n_features=2, n_classes=3, separation=50.0,
                      standardize=False, split=(1, 0, 0), seed=1)
    y = ds.t_train.argmax(1)
    means = np.array([ds.x_train[y == c].mean(0) for c in range(3)])
    # within-class noise is N(0, I): pooled per-feature std ~1 around the class means
    resid = ds.x_train - means[y]
    assert 0.8 < resid.std() < 1.2
    nearest = np.argmin(((ds.x_train[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (nearest == y).mean() > 0.99


@pytest.mark.parametrize("gate, outputs", [("and", [0, 0, 0, 1]), ("or", [0, 1, 1, 1]),
                                           ("xor", [0, 1, 1, 0])])
def test_gates_truth_tables(gate, outputs):
    ds = load_dataset("gates", gate=gate, split=(0.5, 0.25, 0.25), standardize=True)
    table = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    for x, t in [(ds.x_train, ds.t_train), (ds.x_val, ds.t_val), (ds.x_test, ds.t_test)]:
        np.testing.assert_array_equal(x, table)  # whole table, unshuffled, not standardized
        np.testing.assert_array_equal(t.argmax(1), outputs)
    assert ds.class_names == ("0", "1")
    ds.x_train[0, 0] = 9.0  # splits are independent copies
    assert ds.x_val[0, 0] == 0.0


def test_gates_with_guide_scaling():
    ds = load_dataset("gates", gate="xor", standardize=False, guide_scaling=True)
    np.testing.assert_allclose(ds.x_train, [[0.025, 0.025], [0.025, 0.975],
                                            [0.975, 0.025], [0.975, 0.975]])


def test_unknown_gate_lists_gates():
    with pytest.raises(ConfigError, match=re.escape(str(sorted(GATES)))):
        load_dataset("gates", gate="nand")


def test_unknown_dataset_lists_registry():
    with pytest.raises(ConfigError, match=re.escape(str(sorted(DATASETS)))) as e:
        load_dataset("mnist")
    assert "'mnist'" in str(e.value)


# --- csv ---

def _csv(tmp_path, text, name="data.csv"):
    f = tmp_path / name
    f.write_text(text)
    return str(f)


def test_csv_with_string_labels_round_trips(tmp_path):
    rows = [(1.0, 2.0, "dog"), (3.0, -1.0, "cat"), (0.5, 4.0, "dog"), (2.0, 2.5, "ant")]
    path = _csv(tmp_path, "w,h,kind\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    ds = load_dataset("csv", path=path, target="kind", split=(1, 0, 0), standardize=False)
    assert ds.feature_names == ("w", "h") and ds.class_names == ("ant", "cat", "dog")
    order = np.random.default_rng(0).permutation(4)
    np.testing.assert_array_equal(ds.x_train, np.array([r[:2] for r in rows])[order])
    names = [ds.class_names[k] for k in ds.t_train.argmax(1)]
    assert names == [rows[i][2] for i in order]


def test_csv_target_may_be_any_column_and_numeric_labels_sort_numerically(tmp_path):
    path = _csv(tmp_path, "label,a\n10,1\n2,2\n2,3\n10,4\n1,5\n")
    ds = load_dataset("csv", path=path, target="label", split=(1, 0, 0), standardize=False)
    assert ds.class_names == ("1", "2", "10") and ds.feature_names == ("a",)
    label_of = {1.0: "10", 2.0: "2", 3.0: "2", 4.0: "10", 5.0: "1"}
    assert [ds.class_names[k] for k in ds.t_train.argmax(1)] == [label_of[a] for a in ds.x_train[:, 0]]


def test_csv_needs_a_path():
    with pytest.raises(ConfigError, match="data=csv needs a file and its label column"):
        load_dataset("csv", target="y")


def test_csv_needs_a_target(tmp_path):
    with pytest.raises(ConfigError, match="data=csv needs a file and its label column"):
        load_dataset("csv", path=_csv(tmp_path, "a,y\n1,0\n"))


def test_csv_file_not_found(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        load_dataset("csv", path=str(tmp_path / "nope.csv"), target="y")


def test_csv_zero_bytes(tmp_path):
    with pytest.raises(DataError, match=r"data\.csv: file is empty"):
        load_dataset("csv", path=_csv(tmp_path, ""), target="y")


def test_csv_header_only(tmp_path):
    with pytest.raises(DataError, match=r"data\.csv: header only, no data rows"):
        load_dataset("csv", path=_csv(tmp_path, "a,b,y\n"), target="y")


def test_csv_unknown_target_lists_columns(tmp_path):
    with pytest.raises(DataError, match=r"data\.csv: no column 'label'.*\['a', 'b', 'y'\]"):
        load_dataset("csv", path=_csv(tmp_path, "a,b,y\n1,2,0\n"), target="label")


def test_csv_missing_value_names_line_and_column(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,2,0\n3,4,1\n5,,0\n6,7,1\n")
    with pytest.raises(DataError, match=r"data\.csv: line 4: missing value in column 'b'"):
        load_dataset("csv", path=path, target="y")


def test_csv_short_row_is_a_missing_value(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,2,0\n3,4\n")
    with pytest.raises(DataError, match=r"data\.csv: line 3: missing value in column 'y'"):
        load_dataset("csv", path=path, target="y")


def test_csv_blank_line_keeps_line_numbers_honest(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,2,0\n\n3,4,1\n")
    with pytest.raises(DataError, match=r"data\.csv: line 3: line is blank"):
        load_dataset("csv", path=path, target="y")


def test_csv_non_numeric_feature_names_line_column_value(tmp_path):
    path = _csv(tmp_path, "a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,seven,1\n")
    with pytest.raises(DataError,
                       match=r"data\.csv: line 5, column 'b': value 'seven' is not a finite number"):
        load_dataset("csv", path=path, target="y")


def test_csv_one_class(tmp_path):
    path = _csv(tmp_path, "a,y\n1,cat\n2,cat\n3,cat\n")
    with pytest.raises(DataError, match=r"data\.csv: column 'y' has only one class \('cat'\)"):
        load_dataset("csv", path=path, target="y")


def test_csv_fewer_than_two_columns(tmp_path):
    path = _csv(tmp_path, "y\n0\n1\n")
    with pytest.raises(DataError, match=r"data\.csv: found 1 column\(s\) \['y'\]"):
        load_dataset("csv", path=path, target="y")


def test_csv_ragged_row_is_one_line_error(tmp_path):
    path = _csv(tmp_path, "a,y\n1,0\n2,1,9\n")
    with pytest.raises(DataError, match=r"data\.csv: cannot parse as CSV.*line 3") as e:
        load_dataset("csv", path=path, target="y")
    assert "\n" not in str(e.value) and e.value.__cause__ is None

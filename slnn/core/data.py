"""Data sets for a single-layer classifier: a registry of loaders, split and scaled by one function.

    ds = load_dataset(DataSpec("iris", split=[0.5, 0.25, 0.25], seed=0))  # or load_dataset("iris", ...)
    ds.x_train.shape, ds.t_train.shape, ds.n_val, ds.n_test   # ((75, 4), (75, 3), 37, 38)

``DataSpec``, the command line's ``data`` group, checks its own values when made. Nothing is
downloaded; the arrays carry no bias column. Adding a data set: docs/extending.md."""

from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Optional

import numpy as np

from slnn.core.errors import ConfigError, DataError
from slnn.core.errors import check_choice as _choice  # one line, with the nearest choice
from slnn.core.errors import check_positive as _positive

__all__ = ["DATASETS", "GATES", "DataError", "DataSpec", "Dataset", "RawData", "load_dataset"]


class RawData(NamedTuple):
    """A whole data set before splitting: `X` (n, d) float64, `y` (n,) int labels in 0..k-1."""

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]


# eq=False: the generated __eq__ would compare arrays with `==` and raise on truth-testing
@dataclass(frozen=True, eq=False)
class Dataset:
    """Train/validation/test splits, ready for a single-layer classifier.

    Attributes
    ----------
    x_train, x_val, x_test : ndarray of shape (n_split, n_features), float64, no bias column
        An empty split has shape (0, n_features).
    t_train, t_val, t_test : ndarray of shape (n_split, n_classes), float64 one-hot targets
    feature_names, class_names : tuple of str
    """

    name: str
    x_train: np.ndarray
    t_train: np.ndarray
    x_val: np.ndarray
    t_val: np.ndarray
    x_test: np.ndarray
    t_test: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]
    # the preprocessing, as x_prepared = (x_raw - shift) / scale per feature; None: identity
    shift: np.ndarray | None = None
    scale: np.ndarray | None = None
    # what the data came from: SHA-256 of a CSV file's bytes, or of the loaded values and names
    # otherwise (16 hex digits); and where (the CSV's resolved path, or the loader's name)
    digest: str = ""
    source: str = ""

    def prepare(self, x_raw: np.ndarray) -> np.ndarray:
        """Apply this data set's preprocessing to raw features, (n, n_features) -> (n, n_features)."""
        x = np.asarray(x_raw, dtype=np.float64)
        if self.shift is not None:
            x = x - self.shift
        if self.scale is not None:
            x = x / self.scale
        return x

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Undo ``prepare``: prepared features back to the raw units a user would send."""
        x = np.asarray(x, dtype=np.float64)
        if self.scale is not None:
            x = x * self.scale
        if self.shift is not None:
            x = x + self.shift
        return x

    n_features = property(lambda self: self.x_train.shape[1])
    n_classes = property(lambda self: self.t_train.shape[1])
    n_train = property(lambda self: self.x_train.shape[0])
    n_val = property(lambda self: self.x_val.shape[0])
    n_test = property(lambda self: self.x_test.shape[0])


# --- loaders: each returns RawData; load_dataset passes only the keywords a loader names ---

def _sklearn_data_file(name: str) -> str:
    """A data file scikit-learn ships, found without importing scikit-learn (~1-3 s per process,
    paid again by every sweep worker)."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"scikit-learn is not installed, and it ships {name}: pip install scikit-learn")
    return os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data", name)


IRIS_FEATURES = ("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)")


def load_iris_raw() -> RawData:
    """Fisher's iris: 150 x 4, classes setosa / versicolor / virginica (scikit-learn's copy)."""
    path = _sklearn_data_file("iris.csv")
    with open(path) as fh:
        header = fh.readline().strip().split(",")  # n_samples, n_features, class names...
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    return RawData(table[:, :4].astype(np.float64), table[:, 4].astype(np.int64), IRIS_FEATURES,
                   tuple(header[2:]))


def load_iris_petal() -> RawData:
    """Iris with petal length and width only: 2 features + 1 bias = 3 weights per class."""
    raw = load_iris_raw()
    return RawData(raw.X[:, 2:4], raw.y, raw.feature_names[2:4], raw.class_names)


def load_digits_raw() -> RawData:
    """8x8 handwritten digits: 1797 x 64 pixel intensities in 0..16, classes "0".."9"."""
    table = np.loadtxt(_sklearn_data_file("digits.csv.gz"), delimiter=",")
    names = tuple(f"pixel_{r}_{c}" for r in range(8) for c in range(8))  # scikit-learn's names
    return RawData(table[:, :64].astype(np.float64), table[:, 64].astype(np.int64), names,
                   tuple(str(c) for c in range(10)))


def make_blobs(*, rng: np.random.Generator, n_samples: int = 300, n_features: int = 2,
               n_classes: int = 3, separation: float = 3.0) -> RawData:
    """Gaussian classes: centers ~ N(0, separation^2 I), each sample = its center + N(0, I).

    Labels are round-robin (sample i has class i % n_classes) so classes are balanced;
    load_dataset shuffles before splitting.
    """
    centers = rng.normal(0.0, separation, size=(n_classes, n_features))  # (k, d)
    y = np.arange(n_samples) % n_classes                                 # (n,)
    X = centers[y] + rng.normal(size=(n_samples, n_features))            # (n, d) + (n, d)
    return RawData(X, y, tuple(f"x{j}" for j in range(n_features)),
                   tuple(f"c{c}" for c in range(n_classes)))


GATES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor,
}


def load_gate(*, gate: str = "xor") -> RawData:
    """The 2-input truth table of `gate`: X (4, 2) rows 00, 01, 10, 11; classes "0", "1"."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = GATES[gate](X[:, 0], X[:, 1]).astype(np.int64)
    return RawData(X, y, ("x0", "x1"), ("0", "1"))


def _header(path: str) -> list[str]:
    """The header line's names as written (pandas renames repeated ones)."""
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        try:
            return [c.strip() for c in next(csv.reader(fh), [])]
        except csv.Error as e:  # a header field over the csv module's 128 KiB limit, say
            raise DataError(f"{path}: line 1: the header cannot be read ({_clip(str(e))}); the "
                            "first line must name the columns, separated by commas") from None


def _clip(text: str, n: int = 60) -> str:
    """``text`` cut to about ``n`` characters for an error line (a 45 MB field stays in the
    file, not in the message)."""
    text = str(text)
    return text if len(text) <= n else f"{text[:n]}... ({len(text):,} characters)"


def _check_regular_file(path: str) -> None:
    """One line for a path that is missing, a folder, or not a regular file (a FIFO would block
    the read for ever, a device would read without end)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: file not found (working directory is {os.getcwd()}); "
                        "check the path or give an absolute one") from None
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror}); check the path and its "
                        "permissions") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: is a folder, not a file; set data.path to the CSV file in it")
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: is not a regular file (a FIFO, socket or device); save the data "
                        "as a .csv file and set data.path to it")


# numeric labels with more distinct values than this, fractional or mostly unique, are taken for
# a measurement (a regression target) rather than classes
MAX_UNLABELLED_CLASSES = 20


def load_csv(*, path: str | None = None, target: str | None = None) -> RawData:
    """A user's CSV file: `target` names the label column, every other column is a numeric feature.

    Labels may be numbers or strings; classes are the sorted unique labels (numerically if all
    labels are numbers). Every malformed input raises a one-line DataError naming the file, the
    line (header = line 1) or column, and the fix.
    """
    import pandas as pd  # here, not at the top: the built-in data sets and every command's
    # start need no pandas (about 1 s of a command's import)

    _check_regular_file(path)
    try:
        # strings throughout so bad values can be quoted back as written; blank lines kept
        # (as all-missing rows) so row i stays on file line i + 2
        df = pd.read_csv(path, dtype=str, skip_blank_lines=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty; write a header line and data rows") from None
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: cannot parse as CSV ({_clip(str(e).strip(), 200)}); make every "
                        "row have as many comma-separated fields as the header") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text; save it as a UTF-8 CSV") from None
    columns = [str(c) for c in df.columns]
    header = _header(path)
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:  # pandas would rename the second one 'x.1', a name that is not in the file
        where = ", ".join(f"{_clip(c)!r} (columns "
                          f"{', '.join(str(i + 1) for i, h in enumerate(header) if h == c)})"
                          for c in twice[:5])
        raise DataError(f"{path}: line 1: the header repeats {where}; give every column its own "
                        "name")
    df.columns = columns
    if len(columns) < 2:
        raise DataError(f"{path}: found {len(columns)} column(s) {[_clip(c) for c in columns]}; "
                        "need the target column and at least one feature column, separated by "
                        "commas")
    if target not in columns:
        names = [_clip(c) for c in columns[:20]] + (["..."] if len(columns) > 20 else [])
        raise DataError(f"{path}: no column {_clip(target)!r}; set target to one of {names}")
    if len(df) == 0:
        raise DataError(f"{path}: header only, no data rows; add rows below line 1")
    missing = df.isna().to_numpy()                                   # (n, n_columns)
    if missing.any():
        i, j = np.argwhere(missing)[0]                               # first in file order
        what = "line is blank" if missing[i].all() else f"missing value in column {columns[j]!r}"
        raise DataError(f"{path}: line {i + 2}: {what}; fill it in or delete the row")
    features = [c for c in columns if c != target]
    X = df[features].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)  # (n, d)
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataError(f"{path}: line {i + 2}, column {_clip(features[j])!r}: value "
                        f"{_clip(df[features[j]].iloc[i])!r} is not a finite number; features "
                        f"must be numeric (or choose another target column)")
    labels = df[target].to_numpy(dtype=object)
    as_numbers = pd.to_numeric(df[target], errors="coerce").to_numpy(np.float64)
    if np.isfinite(as_numbers).all():
        # numeric labels sort as numbers, so "10" comes after "2"
        values, y = np.unique(as_numbers, return_inverse=True)
        class_names = tuple(str(int(v)) if v.is_integer() else str(v) for v in values)
        whole = all(float(v).is_integer() for v in values)
        if len(values) > MAX_UNLABELLED_CLASSES and (not whole or len(values) > len(df) / 2):
            examples = ", ".join(class_names[:3])
            raise DataError(f"{path}: column {_clip(target)!r} looks like a measurement, not "
                            f"class labels ({len(values)} distinct values among {len(df)} rows, "
                            f"e.g. {examples}); slnn trains classifiers: set data.target to a "
                            "column of labels, or bin the values into a few classes")
    else:
        values, y = np.unique(labels.astype(str), return_inverse=True)
        class_names = tuple(str(v) for v in values)
    if len(class_names) < 2:
        raise DataError(f"{path}: column {_clip(target)!r} has only one class "
                        f"({_clip(class_names[0])!r}); "
                        "a classifier needs at least 2, so check the target column")
    return RawData(X, y.astype(np.int64), tuple(features), class_names)


DATASETS: dict[str, Callable[..., RawData]] = {
    "iris": load_iris_raw,
    "iris_petal": load_iris_petal,
    "digits": load_digits_raw,
    "blobs": make_blobs,
    "gates": load_gate,
    "csv": load_csv,
}


# --- preprocessing ---

def one_hot(y: np.ndarray, n_classes: int) -> np.ndarray:
    """Integer labels of shape (n,) -> float64 one-hot rows of shape (n, n_classes)."""
    return np.eye(n_classes, dtype=np.float64)[y]


def guide_scale(X: np.ndarray) -> np.ndarray:
    """The guide's scaling, per column: 0.5 + 0.475 * (x - mean) / max|x - mean|, in [0.025, 0.975].

    From "15 Steps to Implement a Neural Net", which applies it to the whole data set before
    splitting; kept that way here to reproduce it. A constant column becomes 0.5.
    """
    dev = X - X.mean(axis=0)                  # (n, d) - (d,) -> (n, d)
    spread = np.abs(dev).max(axis=0)          # (d,)
    spread[spread == 0] = 1.0                 # constant column: dev is 0, so the result is 0.5
    return 0.5 + 0.475 * dev / spread


@dataclass
class DataSpec:
    """Which data set, and how it is split and scaled; checked when made (``ConfigError``).

    name : a key of ``DATASETS``
    split : train, validation, test fractions summing to 1 (train > 0). n_train =
        floor(split[0] * n), n_val = floor(split[1] * n), the rest is test: iris with
        [0.5, 0.25, 0.25] gives 75 / 37 / 38
    standardize : z-score each feature with the training split's mean and std (std 0 -> 1)
    guide_scaling : the guide's scaling (``guide_scale``) over the whole set before splitting
    seed : seeds the draw of synthetic data (blobs) and the shuffle before splitting; None: the
        run's own seed, so the split varies with the seed
    path, target : for ``csv``: the file and its label column
    gate : for ``gates``; every split is the whole 4-row truth table
    n_samples, n_features, n_classes, separation : for ``blobs`` (see ``make_blobs``)
    """

    name: str = "iris"
    split: list[float] = field(default_factory=lambda: [0.5, 0.25, 0.25])
    standardize: bool = True
    guide_scaling: bool = False
    seed: Optional[int] = 0
    path: Optional[str] = None
    target: Optional[str] = None
    gate: str = "xor"
    n_samples: int = 300
    n_features: int = 2
    n_classes: int = 3
    separation: float = 3.0

    def __post_init__(self):
        _choice("data.name", self.name, DATASETS)
        _choice("data.gate", self.gate, GATES)
        example = "set e.g. data.split=[0.5,0.25,0.25]"
        try:
            fr = [float(f) for f in self.split]
        except (TypeError, ValueError):
            fr = []
        if len(fr) != 3 or any((not math.isfinite(f)) or f < 0 for f in fr):
            raise ConfigError(f"data.split={list(self.split)} must be 3 fractions >= 0 "
                              f"(train, validation, test): {example}")
        if abs(sum(fr) - 1.0) > 1e-6:
            raise ConfigError(f"data.split={list(self.split)} sums to {sum(fr):g}, not 1: {example}")
        if fr[0] <= 0:
            raise ConfigError(f"data.split has no training fraction: {example}")
        if self.standardize and self.guide_scaling:
            raise ConfigError("data.standardize and data.guide_scaling are both true: "
                              "pick one, e.g. data.standardize=false")
        if self.name == "csv" and not (self.path and self.target):
            raise ConfigError("data=csv needs a file and its label column: "
                              "set data.path=/path/to/file.csv data.target=<column>")
        if self.seed is not None and self.seed < 0:
            raise ConfigError(f"data.seed must be >= 0 or null, got {self.seed}: set e.g. data.seed=0")
        _positive("data.n_samples", self.n_samples, 100)
        _positive("data.n_features", self.n_features, 2)
        if self.n_classes < 2:
            raise ConfigError(f"data.n_classes must be >= 2, got {self.n_classes}: set e.g. data.n_classes=3")
        if self.name == "blobs" and self.n_samples < self.n_classes:
            raise ConfigError(f"data.n_samples={self.n_samples} is fewer than data.n_classes="
                              f"{self.n_classes}: set e.g. data.n_samples=300")
        _positive("data.separation", self.separation, 3.0, allow_zero=True)

    @property
    def fractions(self) -> tuple[float, float, float]:
        return tuple(float(f) for f in self.split)


def _check_finite(X, parts, shift, scale, names, dataset: str) -> None:
    """Values near float64's limit (|x| ~ 1e308) overflow the mean, the deviation or the scaled
    features, which would silently zero a feature: name the column instead."""
    bad = ~np.isfinite(np.concatenate([x for x, _ in parts]) if parts else X).all(axis=0)
    for a in (shift, scale):
        if a is not None:
            bad |= ~np.isfinite(a)
    if bad.any():
        j = int(np.argmax(bad))
        big = float(np.abs(X[:, j]).max())
        raise DataError(f"{dataset}: feature {names[j]!r} has values too large to scale in float64 "
                        f"(|x| up to {big:.3g}); rescale that column (e.g. divide it by a power "
                        "of ten) or set data.standardize=false")


def load_dataset(spec: DataSpec | str = "iris", *, run_seed: int = 0, **options) -> Dataset:
    """Build the data set ``spec`` describes: load it from ``DATASETS``, shuffle, split, scale.

    ``spec`` is a ``DataSpec``, or a data set's name with any ``DataSpec`` field as a keyword
    (``load_dataset("iris", split=[0.5, 0.25, 0.25])``). ``run_seed`` shuffles the split when
    ``spec.seed`` is None. A tiny set whose split would leave the training or test part empty
    raises ``DataError``.
    """
    if isinstance(spec, str):
        spec = DataSpec(name=spec, **options)
    elif options:
        raise TypeError("give either a DataSpec or a name with options, not both")
    name, fr = spec.name, spec.fractions
    rng = np.random.default_rng(run_seed if spec.seed is None else spec.seed)
    loader = DATASETS[name]
    # a loader names the DataSpec fields it uses as keywords (and ``rng`` if it draws)
    wanted = inspect.signature(loader).parameters
    raw = loader(**{k: (rng if k == "rng" else getattr(spec, k)) for k in wanted})

    label = spec.path if name == "csv" else name  # what an error message names
    X = np.asarray(raw.X, dtype=np.float64)                    # (n, d)
    T = one_hot(raw.y, len(raw.class_names))                   # (n, k)
    digest, source = _identity(spec, raw)
    shift = scale = None
    if spec.guide_scaling:
        X_raw = X
        with np.errstate(over="ignore", invalid="ignore"):
            X = guide_scale(X)
        # the same map as an affine (x - shift) / scale, for new data (e.g. a served model)
        spread = np.abs(X_raw - X_raw.mean(axis=0)).max(axis=0)
        spread[spread == 0] = 1.0
        scale = spread / 0.475
        shift = X_raw.mean(axis=0) - 0.5 * scale
    if name == "gates":
        parts = [(X.copy(), T.copy()) for _ in range(3)]  # copies: in-place shuffles stay local
    else:
        n = X.shape[0]
        n_train, n_val = (math.floor(f * n + 1e-9) for f in fr[:2])  # 1e-9: 0.29 * 100 is 28.999...
        n_test = n - n_train - n_val
        empty = ("train" if n_train == 0 else "test" if n_test == 0 and fr[2] > 0 else
                 "validation" if n_val == 0 and fr[1] > 0 else None)
        if empty:  # a validation fraction > 0 asks for early stopping: say it cannot happen
            raise DataError(f"{label}: split {list(fr)} of {n} samples leaves an empty {empty} split; use "
                            "more samples or larger fractions"
                            + (", or data.split=[0.5,0,0.5] to train without one"
                               if empty == "validation" else ""))
        order = rng.permutation(n)
        idx = np.split(order, [n_train, n_train + n_val])
        parts = [(X[i], T[i]) for i in idx]
        if spec.standardize:
            with np.errstate(over="ignore", invalid="ignore"):
                mean = parts[0][0].mean(axis=0)                    # (d,)
                std = parts[0][0].std(axis=0)                      # (d,)
                std[std == 0] = 1.0                                # constant column: centre only
                parts = [((x - mean) / std, t) for x, t in parts]  # train stats only: no leakage
            shift, scale = mean, std
    _check_finite(X, parts, shift, scale, raw.feature_names, label)
    (x_tr, t_tr), (x_va, t_va), (x_te, t_te) = parts
    return Dataset(name, x_tr, t_tr, x_va, t_va, x_te, t_te,
                   tuple(raw.feature_names), tuple(raw.class_names), shift, scale, digest, source)


def _identity(spec: DataSpec, raw: RawData) -> tuple[str, str]:
    """The data's digest and source, recorded with every run so that resume can tell when the
    data changed under the same config."""
    import hashlib

    h = hashlib.sha256()
    if spec.name == "csv":
        path = os.path.realpath(spec.path)
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()[:16], path
    h.update(np.ascontiguousarray(raw.X, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(raw.y, dtype=np.int64).tobytes())
    h.update("\0".join((*raw.feature_names, "|", *raw.class_names)).encode())
    return h.hexdigest()[:16], f"slnn:{spec.name}"

"""Real data sets in the seeds' layout: features × examples, labels (1, m)."""

from __future__ import annotations

import numpy as np


def _sklearn(loader: str, what: str):
    try:
        from sklearn import datasets
    except ImportError as exc:
        raise ImportError(
            f"the {what} data set ships with scikit-learn: pip install 'gradproof[demo]'"
        ) from exc
    return getattr(datasets, loader)()


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices, shuffled reproducibly by ``seed``."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = round(test_fraction * n)
    return order[n_test:], order[:n_test]


def load_breast_cancer(
    test_fraction: float = 0.25, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The Wisconsin diagnostic breast cancer set (569 tumours, 30 features, malignant or benign).

    Shipped with scikit-learn (``pip install 'gradproof[demo]'``). Split
    reproducibly by ``seed``; features standardized with the training split's
    mean and deviation. Returns ``X_train (30, m), Y_train (1, m), X_test, Y_test``
    with ``Y = 1`` for malignant.
    """
    data = _sklearn("load_breast_cancer", "breast cancer")
    X = np.asarray(data.data, dtype=np.float64)
    y = (np.asarray(data.target) == 0).astype(np.float64)  # sklearn: 0 = malignant
    train, test = _split(len(y), test_fraction, seed)
    mean, std = X[train].mean(axis=0), X[train].std(axis=0)
    std[std == 0] = 1.0
    Xs = (X - mean) / std
    return Xs[train].T, y[train].reshape(1, -1), Xs[test].T, y[test].reshape(1, -1)


def load_digits(
    test_fraction: float = 0.25, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Handwritten digits (1797 images of 8×8 pixels, classes 0–9), shipped with scikit-learn.

    Row-major for the layer API: ``X (N, 64)`` scaled to [0, 1], ``y (N,)``
    integer labels; split reproducibly by ``seed``.
    """
    data = _sklearn("load_digits", "digits")
    X = np.asarray(data.data, dtype=np.float64) / 16.0
    y = np.asarray(data.target, dtype=np.int64)
    train, test = _split(len(y), test_fraction, seed)
    return X[train], y[train], X[test], y[test]


def load_h5(train_path, test_path=None):
    """The seeds' HDF5 layout (``train_catvnoncat.h5`` and friends), flattened and scaled.

    Reads ``train_set_x`` (m, h, w, c) and ``train_set_y`` (m,) from
    ``train_path`` (and ``test_set_x``/``test_set_y`` from ``test_path``, or from
    the same file if it holds them), plus ``list_classes`` when present. Returns
    a dict with column-major ``X_train (h·w·c, m)`` scaled to [0, 1],
    ``Y_train (1, m)``, the same for test when found, and ``classes``. Needs
    h5py: ``pip install 'gradproof[h5]'``.
    """
    try:
        import h5py
    except ImportError as exc:
        raise ImportError("reading HDF5 files needs h5py: pip install 'gradproof[h5]'") from exc
    out: dict = {}

    def read(path, prefix):
        with h5py.File(path, "r") as f:
            keys = set(f.keys())
            x_key, y_key = f"{prefix}_set_x", f"{prefix}_set_y"
            if x_key not in keys or y_key not in keys:
                return False
            x = np.asarray(f[x_key])
            y = np.asarray(f[y_key])
            if len(x) != len(y):
                raise ValueError(f"{path}: {x_key} has {len(x)} examples, {y_key} has {len(y)}")
            out[f"X_{prefix}"] = x.reshape(len(x), -1).T.astype(np.float64) / 255.0
            out[f"Y_{prefix}"] = y.reshape(1, -1).astype(np.float64)
            if "list_classes" in keys and "classes" not in out:
                out["classes"] = [
                    c.decode() if isinstance(c, bytes) else str(c) for c in f["list_classes"]
                ]
            return True

    if not read(train_path, "train"):
        raise ValueError(f"{train_path} holds no train_set_x/train_set_y datasets")
    read(test_path or train_path, "test")
    return out

"""Real data sets in the seeds' layout: features × examples, labels (1, m)."""

from __future__ import annotations

import numpy as np


def load_breast_cancer(
    test_fraction: float = 0.25, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The Wisconsin diagnostic breast cancer set (569 tumours, 30 features, malignant or benign).

    Shipped with scikit-learn (``pip install 'gradproof[demo]'``). Split
    reproducibly by ``seed``; features standardized with the training split's
    mean and deviation. Returns ``X_train (30, m), Y_train (1, m), X_test, Y_test``
    with ``Y = 1`` for malignant.
    """
    try:
        from sklearn.datasets import load_breast_cancer as sk_load
    except ImportError as exc:
        raise ImportError(
            "the breast cancer data set ships with scikit-learn: pip install 'gradproof[demo]'"
        ) from exc
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    data = sk_load()
    X = np.asarray(data.data, dtype=np.float64)
    y = (np.asarray(data.target) == 0).astype(np.float64)  # sklearn: 0 = malignant
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = round(test_fraction * len(y))
    test, train = order[:n_test], order[n_test:]
    mean, std = X[train].mean(axis=0), X[train].std(axis=0)
    std[std == 0] = 1.0
    Xs = (X - mean) / std
    return Xs[train].T, y[train].reshape(1, -1), Xs[test].T, y[test].reshape(1, -1)

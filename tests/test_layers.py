"""gradproof.nn layers: every backward proven by gradproof, broken ones caught, PyTorch agrees."""

import numpy as np
import pytest

import gradproof as gp
from gradproof import nn


def rng(seed=0):
    return np.random.default_rng(seed)


def mlp(act, n_in=5, hidden=6, n_out=3):
    return nn.Sequential(nn.Dense(n_in, hidden, seed=1), act, nn.Dense(hidden, n_out, seed=2))


def conv_net(pool=True, norm=False):
    layers = [nn.Conv2D(2, 3, 3, stride=1, padding=1, seed=3)]
    if norm:
        layers.append(nn.BatchNorm(3))
    layers += [nn.Tanh()]
    if pool:
        layers.append(nn.MaxPool2D(2))
    layers += [nn.Flatten(), nn.Dense(3 * (3 if pool else 6) * (3 if pool else 6), 4, seed=4)]
    return nn.Sequential(*layers)


def rnn_net():
    return nn.Sequential(nn.RNN(3, 4, seed=5), nn.Flatten(), nn.Dense(4 * 5, 2, seed=6))


CLASSES = rng(9).integers(0, 3, 8)
CASES = {
    "dense+tanh": (
        lambda: mlp(nn.Tanh()),
        lambda: rng().standard_normal((8, 5)),
        CLASSES,
        nn.SoftmaxCrossEntropy,
    ),
    "relu": (
        lambda: mlp(nn.ReLU()),
        lambda: rng().standard_normal((8, 5)),
        CLASSES,
        nn.SoftmaxCrossEntropy,
    ),
    "leaky relu": (
        lambda: mlp(nn.LeakyReLU(0.1)),
        lambda: rng().standard_normal((8, 5)),
        CLASSES,
        nn.SoftmaxCrossEntropy,
    ),
    "sigmoid+bce": (
        lambda: nn.Sequential(
            nn.Dense(5, 4, seed=1), nn.Tanh(), nn.Dense(4, 1, seed=2), nn.Sigmoid()
        ),
        lambda: rng().standard_normal((8, 5)),
        (CLASSES > 0).astype(float).reshape(-1, 1),
        nn.BinaryCrossEntropy,
    ),
    "mse": (
        lambda: mlp(nn.Tanh(), n_out=2),
        lambda: rng().standard_normal((8, 5)),
        rng(2).standard_normal((8, 2)),
        nn.MeanSquaredError,
    ),
    "dropout": (
        lambda: nn.Sequential(
            nn.Dense(5, 6, seed=1), nn.Tanh(), nn.Dropout(0.5), nn.Dense(6, 3, seed=2)
        ),
        lambda: rng().standard_normal((8, 5)),
        CLASSES,
        nn.SoftmaxCrossEntropy,
    ),
    "batchnorm": (
        lambda: nn.Sequential(
            nn.Dense(5, 6, seed=1), nn.BatchNorm(6), nn.Tanh(), nn.Dense(6, 3, seed=2)
        ),
        lambda: rng().standard_normal((8, 5)),
        CLASSES,
        nn.SoftmaxCrossEntropy,
    ),
    "conv+maxpool": (
        lambda: conv_net(),
        lambda: rng().standard_normal((3, 2, 6, 6)),
        np.array([0, 3, 1]),
        nn.SoftmaxCrossEntropy,
    ),
    "conv+batchnorm": (
        lambda: conv_net(pool=False, norm=True),
        lambda: rng().standard_normal((3, 2, 6, 6)),
        np.array([0, 3, 1]),
        nn.SoftmaxCrossEntropy,
    ),
    "conv stride 2": (
        lambda: nn.Sequential(
            nn.Conv2D(2, 2, 3, stride=2, seed=3), nn.Flatten(), nn.Dense(2 * 3 * 3, 3, seed=4)
        ),
        lambda: rng().standard_normal((2, 2, 7, 7)),
        np.array([2, 0]),
        nn.SoftmaxCrossEntropy,
    ),
    "rnn (bptt)": (
        lambda: rnn_net(),
        lambda: rng().standard_normal((4, 5, 3)),
        np.array([0, 1, 1, 0]),
        nn.SoftmaxCrossEntropy,
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_every_layer_backward_passes_at_default_settings(case, global_rng):
    build, make_x, y, loss = CASES[case]
    model = build()
    before = {k: v.copy() for k, v in model.params().items()}
    report = model.gradient_check(make_x(), y, loss())
    assert report.passed, str(report)
    for k, v in model.params().items():
        np.testing.assert_array_equal(v, before[k])


def test_l2_regularised_backward_passes():
    model = mlp(nn.Tanh())
    report = model.gradient_check(
        rng().standard_normal((8, 5)), CLASSES, nn.SoftmaxCrossEntropy(), lambd=0.7
    )
    assert report.passed, str(report)


class DoubledDense(nn.Dense):
    def backward(self, dy):
        dx = super().backward(dy)
        self.grads["W"] = 2 * self.grads["W"]
        return dx


class ForgetfulDropout(nn.Dropout):
    def backward(self, dy):
        return dy  # the mask is forgotten


class SloppyBatchNorm(nn.BatchNorm):
    def backward(self, dy):
        dx = super().backward(dy)
        self.grads["gamma"] = dy.sum(axis=self.axes)  # x_hat forgotten
        return dx


class FlippedConv(nn.Conv2D):
    def backward(self, dy):
        dx = super().backward(dy)
        self.grads["W"] = self.grads["W"][:, :, ::-1, ::-1].copy()
        return dx


class FirstCornerPool(nn.MaxPool2D):
    def backward(self, dy):
        self.argmax = np.zeros_like(self.argmax)  # routes every gradient to the window's corner
        return super().backward(dy)


class TruncatedRNN(nn.RNN):
    def backward(self, dy):
        saved = self.params["W_hh"]
        self.params = {**self.params, "W_hh": np.zeros_like(saved)}  # no gradient through time
        try:
            return super().backward(dy)
        finally:
            self.params["W_hh"] = saved


class WrongTanh(nn.Tanh):
    def backward(self, dy):
        return dy * (1.0 - self.y)  # should be 1 - y**2


BROKEN = [
    (
        "dense dW doubled",
        lambda: nn.Sequential(DoubledDense(5, 4, seed=1), nn.Tanh(), nn.Dense(4, 3, seed=2)),
        "dense",
        {"0.W"},
    ),
    (
        "dropout mask forgotten",
        lambda: nn.Sequential(
            nn.Dense(5, 6, seed=1), nn.Tanh(), ForgetfulDropout(0.5), nn.Dense(6, 3, seed=2)
        ),
        "dense",
        {"0.W", "0.b"},
    ),
    (
        "batchnorm dgamma",
        lambda: nn.Sequential(
            nn.Dense(5, 6, seed=1), SloppyBatchNorm(6), nn.Tanh(), nn.Dense(6, 3, seed=2)
        ),
        "dense",
        {"1.gamma"},
    ),
    (
        "conv kernel flipped",
        lambda: nn.Sequential(
            FlippedConv(2, 3, 3, padding=1, seed=3),
            nn.Tanh(),
            nn.Flatten(),
            nn.Dense(108, 4, seed=4),
        ),
        "image",
        {"0.W"},
    ),
    (
        "maxpool routes to corner",
        lambda: nn.Sequential(
            nn.Conv2D(2, 3, 3, padding=1, seed=3),
            nn.Tanh(),
            FirstCornerPool(2),
            nn.Flatten(),
            nn.Dense(27, 4, seed=4),
        ),
        "image",
        {"0.W", "0.b"},
    ),
    (
        "rnn truncated bptt",
        lambda: nn.Sequential(TruncatedRNN(3, 4, seed=5), nn.Flatten(), nn.Dense(20, 2, seed=6)),
        "sequence",
        {"0.W_ih", "0.W_hh", "0.b"},
    ),
    (
        "tanh derivative wrong",
        lambda: nn.Sequential(nn.Dense(5, 4, seed=1), WrongTanh(), nn.Dense(4, 3, seed=2)),
        "dense",
        {"0.W", "0.b"},
    ),
]
INPUTS = {
    "dense": (lambda: rng().standard_normal((8, 5)), CLASSES),
    "image": (lambda: rng().standard_normal((3, 2, 6, 6)), np.array([0, 3, 1])),
    "sequence": (lambda: rng().standard_normal((4, 5, 3)), np.array([0, 1, 1, 0])),
}


@pytest.mark.parametrize(("bug", "build", "kind", "wrong"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_backward_fails_naming_the_parameter(bug, build, kind, wrong, global_rng):
    make_x, y = INPUTS[kind]
    report = build().gradient_check(make_x(), y, nn.SoftmaxCrossEntropy())
    assert not report.passed
    assert {t.name for t in report.failing} == wrong, str(report)
    assert all(t.diagnosis for t in report.failing)


def test_dense_doubled_is_diagnosed_as_a_factor_of_two():
    model = nn.Sequential(DoubledDense(5, 4, seed=1), nn.Tanh(), nn.Dense(4, 3, seed=2))
    report = model.gradient_check(rng().standard_normal((8, 5)), CLASSES, nn.SoftmaxCrossEntropy())
    assert "2.00 × numeric" in report.tensors["0.W"].diagnosis


def test_batchnorm_statistics_survive_a_check():
    model = nn.Sequential(nn.Dense(5, 6, seed=1), nn.BatchNorm(6), nn.Dense(6, 3, seed=2))
    bn = model.layers[1]
    mean, var = bn.running_mean.copy(), bn.running_var.copy()
    model.gradient_check(rng().standard_normal((8, 5)), CLASSES, nn.SoftmaxCrossEntropy())
    np.testing.assert_array_equal(bn.running_mean, mean)
    np.testing.assert_array_equal(bn.running_var, var)
    assert bn.update_stats


def test_fit_proves_the_backward_first():
    good = mlp(nn.Tanh())
    X, y = rng().standard_normal((32, 5)), rng(1).integers(0, 3, 32)
    history = nn.fit(
        good,
        X,
        y,
        nn.SoftmaxCrossEntropy(),
        nn.Adam(0.05),
        epochs=20,
        batch_size=8,
        check_gradients=True,
        progress=False,
    )
    assert history[-1] < history[0]
    bad = nn.Sequential(DoubledDense(5, 4, seed=1), nn.Tanh(), nn.Dense(4, 3, seed=2))
    with pytest.raises(gp.GradientError, match=r"0\.W"):
        nn.fit(
            bad, X, y, nn.SoftmaxCrossEntropy(), nn.SGD(0.1), check_gradients=True, progress=False
        )


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: mlp(nn.Tanh())(np.ones((4, 7))), r"Dense expects \(N, 5\) inputs, got \(4, 7\)"),
        (lambda: nn.Dropout(1.5), r"keep_prob must be in \(0, 1\], got 1.5"),
        (lambda: nn.Dropout(0), r"keep_prob must be in \(0, 1\]"),
        (lambda: nn.Dense(3, 2, init="glorot"), "unknown init 'glorot'"),
        (lambda: nn.Conv2D(3, 2, 3)(np.ones((1, 2, 5, 5))), "expects 3 input channels"),
        (
            lambda: nn.SoftmaxCrossEntropy()(np.ones((3, 4)), np.array([0, 1, 4])),
            r"labels must lie in \[0, 4\)",
        ),
        (
            lambda: nn.SoftmaxCrossEntropy()(np.ones((3, 4)), np.array([0.0, 1.0, 2.0])),
            "labels must be integers",
        ),
        (
            lambda: nn.BinaryCrossEntropy()(np.full((3, 1), 0.5), np.array([0, 2, 1])),
            "binary labels must be 0 or 1",
        ),
        (
            lambda: nn.BinaryCrossEntropy()(np.full((3, 1), 0.5), np.ones(4)),
            "labels must have the shape",
        ),
        (lambda: nn.RNN(3, 2)(np.ones((2, 3))), r"expects \(N, T, features\)"),
        (
            lambda: nn.fit(
                mlp(nn.Tanh()),
                np.ones((4, 5)),
                np.zeros(3, int),
                nn.SoftmaxCrossEntropy(),
                nn.SGD(),
            ),
            "X has 4 examples but y has 3",
        ),
    ],
    ids=[
        "dense-shape",
        "keep-prob-high",
        "keep-prob-zero",
        "init",
        "channels",
        "label-range",
        "label-dtype",
        "binary-values",
        "binary-shape",
        "rnn-shape",
        "fit-lengths",
    ],
)
def test_bad_layer_input_is_refused_with_a_clear_message(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_layers_learn_breast_cancer_above_95_percent(global_rng):
    pytest.importorskip("sklearn")
    Xtr, Ytr, Xte, Yte = nn.load_breast_cancer()
    model = nn.Sequential(
        nn.Dense(30, 16, seed=0), nn.ReLU(), nn.Dense(16, 1, seed=1), nn.Sigmoid()
    )
    nn.fit(
        model,
        Xtr.T,
        Ytr.T,
        nn.BinaryCrossEntropy(),
        nn.Adam(0.01),
        epochs=30,
        batch_size=32,
        progress=False,
    )
    assert model.accuracy(Xte.T, Yte) >= 0.95


def test_layers_learn_digits_above_95_percent(global_rng):
    pytest.importorskip("sklearn")
    Xtr, ytr, Xte, yte = nn.load_digits()
    model = nn.Sequential(
        nn.Dense(64, 64, seed=0), nn.ReLU(), nn.Dropout(0.9), nn.Dense(64, 10, seed=1)
    )
    nn.fit(
        model,
        Xtr,
        ytr,
        nn.SoftmaxCrossEntropy(),
        nn.Adam(0.01),
        epochs=30,
        batch_size=32,
        progress=False,
    )
    assert model.accuracy(Xte, yte) >= 0.95


def test_hdf5_loader_reads_the_seeds_layout(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "train_catvnoncat.h5"
    images = rng().integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f["train_set_x"] = images
        f["train_set_y"] = np.array([1, 0, 1, 1, 0, 0])
        f["list_classes"] = np.array([b"non-cat", b"cat"])
    data = nn.load_h5(path)
    assert data["X_train"].shape == (48, 6) and data["Y_train"].shape == (1, 6)
    np.testing.assert_allclose(data["X_train"][:, 0], images[0].reshape(-1) / 255)
    assert data["classes"] == ["non-cat", "cat"] and "X_test" not in data


class HalfMSE(nn.MeanSquaredError):
    def backward(self):
        return self.diff / self.diff.size  # the factor 2 forgotten


class UnaveragedSoftmax(nn.SoftmaxCrossEntropy):
    def backward(self):
        return super().backward() * len(self.y)  # 1/N forgotten


@pytest.mark.parametrize(
    ("loss", "y", "factor"),
    [(HalfMSE(), rng(2).standard_normal((8, 3)), "0.50"), (UnaveragedSoftmax(), CLASSES, "8.00")],
    ids=["mse without its 2", "softmax without 1/N"],
)
def test_broken_loss_backward_blames_every_parameter_by_its_factor(loss, y, factor):
    model = mlp(nn.Tanh())
    report = model.gradient_check(rng().standard_normal((8, 5)), y, loss)
    assert {t.name for t in report.failing} == set(model.params())
    assert all(f"{factor} × numeric" in t.diagnosis for t in report.failing)

"""gradproof.nn agrees with PyTorch (float64, same weights): outputs and every gradient."""

import numpy as np
import pytest

from gradproof import nn

torch = pytest.importorskip("torch")
F = torch.nn.functional


def t(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def agree(ours, theirs, atol=1e-10):
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-9, atol=atol)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_dense_forward_and_backward_match_torch(rng):
    layer = nn.Dense(5, 3, seed=1)
    x = rng.standard_normal((4, 5))
    dy = rng.standard_normal((4, 3))
    W, b, xt = t(layer.params["W"]), t(layer.params["b"]), t(x)
    y = F.linear(xt, W, b)
    y.backward(torch.tensor(dy))
    agree(layer.forward(x), y)
    agree(layer.backward(dy), xt.grad)
    agree(layer.grads["W"], W.grad)
    agree(layer.grads["b"], b.grad)


@pytest.mark.parametrize(
    ("stride", "padding"),
    [(1, 0), (1, 1), (2, 1)],
    ids=["stride 1 no padding", "stride 1 padding 1", "stride 2 padding 1"],
)
def test_conv2d_forward_and_backward_match_torch(rng, stride, padding):
    layer = nn.Conv2D(2, 3, 3, stride=stride, padding=padding, seed=2)
    x = rng.standard_normal((2, 2, 7, 7))
    W, b, xt = t(layer.params["W"]), t(layer.params["b"]), t(x)
    y = F.conv2d(xt, W, b, stride=stride, padding=padding)
    dy = rng.standard_normal(tuple(y.shape))
    y.backward(torch.tensor(dy))
    agree(layer.forward(x), y)
    agree(layer.backward(dy), xt.grad)
    agree(layer.grads["W"], W.grad)
    agree(layer.grads["b"], b.grad)


def test_maxpool_forward_and_backward_match_torch(rng):
    layer = nn.MaxPool2D(2)
    x = rng.standard_normal((2, 3, 6, 6))
    xt = t(x)
    y = F.max_pool2d(xt, 2)
    dy = rng.standard_normal(tuple(y.shape))
    y.backward(torch.tensor(dy))
    agree(layer.forward(x), y)
    agree(layer.backward(dy), xt.grad)


@pytest.mark.parametrize("shape", [(8, 4), (3, 4, 5, 5)], ids=["dense", "images"])
def test_batchnorm_training_forward_and_backward_match_torch(rng, shape):
    layer = nn.BatchNorm(4)
    layer.params["gamma"] = rng.standard_normal(4)
    layer.params["beta"] = rng.standard_normal(4)
    x = rng.standard_normal(shape)
    g, b, xt = t(layer.params["gamma"]), t(layer.params["beta"]), t(x)
    y = F.batch_norm(xt, None, None, g, b, training=True, eps=layer.eps)
    dy = rng.standard_normal(shape)
    y.backward(torch.tensor(dy))
    agree(layer.forward(x), y)
    agree(layer.backward(dy), xt.grad)
    agree(layer.grads["gamma"], g.grad)
    agree(layer.grads["beta"], b.grad)


def test_rnn_forward_and_backward_through_time_match_torch(rng):
    layer = nn.RNN(3, 4, seed=3)
    x = rng.standard_normal((2, 5, 3))
    ref = torch.nn.RNN(3, 4, batch_first=True, nonlinearity="tanh").double()
    with torch.no_grad():
        ref.weight_ih_l0.copy_(torch.tensor(layer.params["W_ih"]))
        ref.weight_hh_l0.copy_(torch.tensor(layer.params["W_hh"]))
        ref.bias_ih_l0.copy_(torch.tensor(layer.params["b"]))
        ref.bias_hh_l0.zero_()
    xt = t(x)
    y, _ = ref(xt)
    dy = rng.standard_normal(tuple(y.shape))
    y.backward(torch.tensor(dy))
    agree(layer.forward(x), y)
    agree(layer.backward(dy), xt.grad)
    agree(layer.grads["W_ih"], ref.weight_ih_l0.grad)
    agree(layer.grads["W_hh"], ref.weight_hh_l0.grad)
    agree(layer.grads["b"], ref.bias_ih_l0.grad)


def test_losses_and_their_gradients_match_torch(rng):
    logits = rng.standard_normal((6, 4))
    labels = rng.integers(0, 4, 6)
    loss = nn.SoftmaxCrossEntropy()
    lt = t(logits)
    ref = F.cross_entropy(lt, torch.tensor(labels))
    ref.backward()
    assert loss(logits, labels) == pytest.approx(ref.item(), rel=1e-12)
    agree(loss.backward(), lt.grad)
    p = 1 / (1 + np.exp(-rng.standard_normal((6, 1))))
    y = rng.integers(0, 2, (6, 1)).astype(float)
    bce = nn.BinaryCrossEntropy()
    pt = t(p)
    ref = F.binary_cross_entropy(pt, torch.tensor(y))
    ref.backward()
    assert bce(p, y) == pytest.approx(ref.item(), rel=1e-12)
    agree(bce.backward(), pt.grad)

"""What the tests share besides fixtures: a small network, its planted bugs, a byte snapshot.

Test modules ``import helpers``: tests/ has no ``__init__.py``, so pytest's default "prepend"
import mode puts it on ``sys.path`` before it imports conftest.py and the test modules.
"""

from __future__ import annotations

import numpy as np


def snapshot(tree):
    """The exact bytes of every array in a structure, to prove nothing changed."""
    if isinstance(tree, dict):
        return {k: snapshot(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [snapshot(v) for v in tree]
    if isinstance(tree, np.ndarray):
        return (tree.dtype.str, tree.shape, tree.tobytes())
    return tree


class TwoLayerNet:
    """tanh hidden layer, sigmoid output, cross-entropy; column-major like the seeds.

    W2 is square (hidden × hidden) so that a transposed gradient is diagnosable;
    ``keep_prob < 1`` adds inverted dropout drawn from ``np.random``.
    """

    def __init__(self, n_x=4, n_h=5, m=6, seed=0, keep_prob=1.0):
        rng = np.random.default_rng(seed)
        self.X = rng.standard_normal((n_x, m))
        self.Y = (rng.random((1, m)) > 0.5).astype(float)
        self.keep_prob = keep_prob
        self.params = {
            "W1": rng.standard_normal((n_h, n_x)),
            "b1": rng.standard_normal((n_h, 1)),
            "W2": rng.standard_normal((n_h, n_h)) / 2,
            "b2": rng.standard_normal((n_h, 1)),
            "W3": rng.standard_normal((1, n_h)),
            "b3": rng.standard_normal((1, 1)),
        }

    def forward(self, p):
        Z1 = p["W1"] @ self.X + p["b1"]
        A1 = np.tanh(Z1)
        D1 = np.ones_like(A1)
        if self.keep_prob < 1:
            D1 = (np.random.rand(*A1.shape) < self.keep_prob) / self.keep_prob
        A1d = A1 * D1
        Z2 = p["W2"] @ A1d + p["b2"]
        A2 = np.tanh(Z2)
        Z3 = p["W3"] @ A2 + p["b3"]
        A3 = 1 / (1 + np.exp(-Z3))
        m = self.X.shape[1]
        cost = -np.sum(self.Y * np.log(A3) + (1 - self.Y) * np.log(1 - A3)) / m
        return cost, (A1, D1, A1d, A2, A3)

    def cost(self, p):
        return self.forward(p)[0]

    def backward(self, p, bug=None):
        _, (A1, D1, A1d, A2, A3) = self.forward(p)
        m = self.X.shape[1]
        dZ3 = (A3 - self.Y) / m
        g = {"dW3": dZ3 @ A2.T, "db3": dZ3.sum(axis=1, keepdims=True)}
        dA2 = p["W3"].T @ dZ3
        dZ2 = dA2 * (1 - A2**2)
        g["dW2"] = dZ2 @ A1d.T
        g["db2"] = dZ2.sum(axis=1, keepdims=True)
        dA1 = p["W2"].T @ dZ2
        if bug != "dropout mask forgotten":
            dA1 = dA1 * D1
        dtanh = (1 - A1) if bug == "wrong activation derivative" else (1 - A1**2)
        dZ1 = dA1 * dtanh
        g["dW1"] = dZ1 @ self.X.T
        g["db1"] = dZ1.sum(axis=1, keepdims=True)
        g["dA1"], g["dZ1"] = dA1, dZ1  # intermediates, as seed-style code returns them
        if bug == "stray factor":
            g["dW1"] = 3 * g["dW1"]
        elif bug == "sign flip":
            g["db2"] = -g["db2"]
        elif bug == "transposed weight gradient":
            g["dW2"] = g["dW2"].T
        elif bug == "missing bias term":
            g["db1"] = np.zeros_like(g["db1"])
        elif bug == "one element wrong":
            g["dW1"] = g["dW1"].copy()
            g["dW1"][2, 1] += 0.5
        return g


# The planted bugs of TwoLayerNet.backward with a single cause each:
# bug, parameters that must fail, expected pattern, words the diagnosis must hold.
CATALOGUE = [
    ("stray factor", {"W1"}, "scale", "3.00 × numeric"),
    ("sign flip", {"b2"}, "sign", "flipped sign"),
    ("transposed weight gradient", {"W2"}, "transpose", "transpose"),
    ("missing bias term", {"b1"}, "zero", "missing path"),
    ("one element wrong", {"W1"}, "few", "W1[2, 1]"),
]


def old_style_exp(torch):
    """``exp`` as an old-style ``torch.autograd.Function`` (``forward(ctx, ...)``, no
    ``setup_context``): right in reverse mode, no jvp, and no vmap batching rule."""

    class OldExp(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return a.exp()

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_tensors
            return g * a.exp()

    return OldExp


def tanh_function(torch, name="Tanh", slip=False):
    """A custom ``autograd.Function`` named ``name`` computing tanh; with ``slip`` its
    backward multiplies by ``1 - y`` where the derivative is ``1 - y**2``."""

    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y) if slip else g * (1 - y**2)

    methods = {"forward": staticmethod(forward), "backward": staticmethod(backward)}
    return type(name, (torch.autograd.Function,), methods)


def beside(use, run, n):
    """``run(i)`` for i in range(n), each in a thread of its own, while ``use()`` runs
    again and again in another; an exception in any of them is raised here."""
    import threading

    stop = threading.Event()
    errors = []

    def caught(target, *args):
        try:
            target(*args)
        except BaseException as exc:  # (raised below, in the test's own thread)
            errors.append(exc)

    def again():
        while not stop.is_set():
            use()

    user = threading.Thread(target=caught, args=(again,))
    user.start()
    threads = [threading.Thread(target=caught, args=(run, i)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    user.join()
    if errors:
        raise errors[0]

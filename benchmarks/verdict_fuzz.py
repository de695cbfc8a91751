"""Verdict trust: how often a right gradient fails as WRONG, and a wrong one passes.

Randomized costs, each checked with its right gradient and with up to six wrong ones,
across 46 configurations: five kinds of cost value (``f64``: exact float64; ``f16``: the
value rounded to float16; ``f32in``: computed in float32 inside; ``round3``:
``np.round(J, 3)``; ``noise``: a deterministic relative noise of 1e-9 to 1e-6) times ten
ways of checking (``default``, ``directional`` and ``sample`` mode, ``forward`` and
``backward`` differences, the ``complex`` step (float64 only), and a given ``eps`` of
1e-7, 1e-5, 1e-3 or 1e-2). A cost is a sum of elementwise and matrix-product terms, a
regularized logistic regression or a one-hidden-layer MLP (tanh or ReLU), with
parameters of size 1e-6 to 1e3, a cost of size 0.1 to 1000 and sometimes an offset up to
1000 times that. The wrong gradients: one tensor times 2, 1.3 or 1.05, one tensor's sign
flipped, one term left out, one to three elements off by 1e-3, 1e-2 or 0.3 of the
tensor's largest element.

Case N draws everything from ``np.random.default_rng(N)``; its configuration is
``CONFIGS[N % 46]``. A run checks cases 0, 1, 2, ... until its budget is spent, so any
two runs share the shorter one's cases (compare them on those)::

    python benchmarks/verdict_fuzz.py run --budget 600 --out /tmp/verdict_fuzz.jsonl
    python benchmarks/verdict_fuzz.py table /tmp/verdict_fuzz.jsonl
    python benchmarks/verdict_fuzz.py case 29      # one case, every check, verbose

``run`` writes one JSON line per case (one process; 25 to 30 cases a second on a shared
2-core machine), after a first line with the gradproof commit it imported (``+modified``
where its source differs from that commit: rerun from a clean copy). Another commit::

    git clone -q /path/to/gradproof /tmp/gp && git -C /tmp/gp checkout -q COMMIT
    PYTHONPATH=/tmp/gp/src python benchmarks/verdict_fuzz.py run --budget 600 --out FILE

``table`` prints, per configuration, the right-gradient checks, how many passed and how
many failed as WRONG (a false alarm: a row WRONG, not undecided), and the wrong-gradient
checks, how many passed and how many passed beyond the accuracy claimed (a false pass:
``report.passed`` while a tensor's true difference ``||g - g_true|| / (||g|| + ||g_true||)``
exceeds its row's ``accuracy``, or 1e-7 where it states none); then the false passes by
wrong gradient, and every finding by kind (FA-1 ... FP-7) with its count per
configuration and one case to re-run with ``case``. ``case N`` prints the case's
parameters and, for each check, its report's first line, or where it is a finding, its
kind and the whole report.

Counted apart, not as false alarms or passes: findings at a given ``eps`` where the
smooth cost's own truncation at that step (its finite difference in long double) is
above 0.1 x tol (alarms) or 0.1 x the bug (passes), the step's fault, not the
checker's ("user-step"); sample-mode passes whose wrong elements were never perturbed
("unsampled", by design); case 16518, whose sigmoid (via tanh) underflows in the tail
(the harness's error). A check that raises is an error: case 20153's seven checks
(f64/complex) raise because this harness's complex softplus overflows; the others are
the checker's.

Results: ``benchmarks/results/verdict_fuzz.md``. Among 7,807 flagged checks of an
earlier 21,519-case run, two (case 13496, f16, eps=1e-2) gave another verdict when
re-run in a fresh process (not explained); all others re-run identically.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import math
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import gradproof as gp

TOL = 1e-7  # the check's default tol: the accuracy of a row that states none
U = 2.0**-52

PRECISIONS = ["f64", "f16", "f32in", "round3", "noise"]
OPTIONS = [
    ("default", {}),
    ("directional", {"mode": "directional"}),
    ("sample", {"mode": "sample"}),  # k drawn per case
    ("forward", {"method": "forward"}),
    ("backward", {"method": "backward"}),
    ("complex", {"method": "complex"}),
    ("eps1e-7", {"eps": 1e-7}),
    ("eps1e-5", {"eps": 1e-5}),
    ("eps1e-3", {"eps": 1e-3}),
    ("eps1e-2", {"eps": 1e-2}),
]
CONFIGS = [(p, o) for p in PRECISIONS for o, _ in OPTIONS if not (o == "complex" and p != "f64")]
OPT = dict(OPTIONS)
WRONG_KINDS = ["x2", "x1.3", "x1.05", "sign", "drop", "elems"]
HARNESS_ARTIFACTS = {16518}  # the harness's sigmoid underflows in the tail


# ---------------------------------------------------------------------------------------
# The costs. Every draw from the case's generator stays in the order it was measured in:
# the same seed must give the same case.


def _softplus(z):
    if np.iscomplexobj(z):
        return np.log(1 + np.exp(z))
    return np.logaddexp(0.0, z)


def _sigmoid(z):
    if np.iscomplexobj(z):
        return 1 / (1 + np.exp(-z))
    return 0.5 * (1 + np.tanh(0.5 * z))


def _poly(z):
    return 0.7 * z - 0.4 * z**2 + 0.15 * z**3


def _dpoly(z):
    return 0.7 - 0.8 * z + 0.45 * z**2


ELEM = {  # name: (f, f'), complex-safe
    "sin": (np.sin, np.cos),
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "exp": (np.exp, np.exp),
    "log1p2": (lambda z: np.log(1 + z * z), lambda z: 2 * z / (1 + z * z)),
    "poly": (_poly, _dpoly),
    "softplus": (_softplus, _sigmoid),
}


def loguniform(rng, lo, hi):
    return float(10 ** rng.uniform(math.log10(lo), math.log10(hi)))


def family_sum(rng, ps, complex_only):
    """Sum of elementwise terms on 1-3 arrays, and of matrix-product terms."""
    narr = int(rng.integers(1, 4))
    matrix = narr >= 2 and rng.random() < 0.5
    shapes = {}
    if matrix:
        r = int(rng.integers(1, 8))
        c = int(rng.integers(1, 8))
        q = int(rng.integers(1, 8))
        shapes["A"] = (r, c)
        shapes["B"] = (c, q)
        if narr == 3:
            shapes["C"] = (int(rng.integers(1, 51)),)
    else:
        for nm in "ABC"[:narr]:
            if rng.random() < 0.3:
                r = int(rng.integers(1, 8))
                shapes[nm] = (r, int(rng.integers(1, 50 // r + 1)))
            else:
                shapes[nm] = (int(rng.integers(1, 51)),)
    params = {
        nm: ps * rng.choice([-1, 1], size=s) * rng.uniform(0.5, 2.0, size=s)
        for nm, s in shapes.items()
    }
    terms = []  # each term varies on a scale of about 1 or about ps
    nterms = int(rng.integers(1, 5))
    kinds = list(ELEM)
    for _ in range(nterms):
        if matrix and rng.random() < 0.4:
            g = "tanh" if rng.random() < 0.5 else "poly"
            typ = np.sqrt(shapes["A"][1]) * ps * ps
            s = float(rng.uniform(0.3, 3) / typ)
            W = rng.standard_normal((shapes["A"][0], shapes["B"][1]))
            terms.append(("mat", g, s, W))
        else:
            nm = str(rng.choice(list(shapes)))
            k = str(rng.choice(kinds))
            # exp: a scale of at least 1 keeps it finite (and draws nothing)
            vs = max(1.0, ps) if k == "exp" else (ps if rng.random() < 0.5 else 1.0)
            w = float(rng.uniform(0.3, 2) / vs * rng.choice([-1, 1]))
            b = rng.uniform(-1, 1, size=shapes[nm]) if k != "exp" else 0.0
            a = rng.standard_normal(shapes[nm])
            terms.append(("el", nm, k, w, b, a))

    def J(p):
        tot = 0.0
        for t in terms:
            if t[0] == "mat":
                _, g, s, W = t
                f, _ = ELEM[g]
                Wc = W.astype(p["A"].dtype) if p["A"].dtype == np.float32 else W
                tot = tot + np.sum(Wc * f(s * (p["A"] @ p["B"])))
            else:
                _, nm, k, w, b, a = t
                f, _ = ELEM[k]
                x = p[nm]
                if x.dtype == np.float32:
                    a = a.astype(np.float32)
                    b = np.float32(b) if np.isscalar(b) else b.astype(np.float32)
                tot = tot + np.sum(a * f(w * x + b))
        return tot

    def grad(p, drop=None):
        G = {nm: np.zeros(s) for nm, s in shapes.items()}
        for i, t in enumerate(terms):
            if i == drop:
                continue
            if t[0] == "mat":
                _, g, s, W = t
                _, fp = ELEM[g]
                M = W * fp(s * (p["A"] @ p["B"])) * s
                G["A"] += M @ p["B"].T
                G["B"] += p["A"].T @ M
            else:
                _, nm, k, w, b, a = t
                _, fp = ELEM[k]
                G[nm] += a * fp(w * p[nm] + b) * w
        return G

    drops = list(range(len(terms))) if len(terms) >= 2 else []
    desc = [[str(t[0]), str(t[1]), str(t[2])] for t in terms]
    return params, J, grad, drops, {"family": "sum", "terms": desc}


def family_logistic(rng, ps, complex_only):
    """Mean logistic loss of a linear model, with an L2 term half the time."""
    dd = int(rng.integers(1, 51))
    m = int(rng.integers(2, 40))
    X = rng.standard_normal((m, dd)) * rng.uniform(0.3, 3) / (ps * np.sqrt(dd))
    y = (rng.random(m) < 0.5).astype(float)
    params = {"w": ps * rng.standard_normal(dd), "b": ps * rng.standard_normal(1)}
    lam = rng.uniform(0.1, 1) / (ps * ps) * 0.1 if rng.random() < 0.5 else 0.0

    def J(p):
        f32 = p["w"].dtype == np.float32
        Xc, yc = (X.astype(np.float32), y.astype(np.float32)) if f32 else (X, y)
        z = Xc @ p["w"] + p["b"][0]
        return np.mean(_softplus(z) - yc * z) + 0.5 * lam * np.sum(p["w"] ** 2)

    def grad(p, drop=None):
        z = X @ p["w"] + p["b"][0]
        r = (_sigmoid(z) - y) / m
        gw = X.T @ r
        if drop != "reg":
            gw = gw + lam * p["w"]
        gb = np.array([np.sum(r)])
        if drop == "bias":
            gb = np.zeros(1)
        return {"w": gw, "b": gb}

    drops = (["reg"] if lam else []) + ["bias"]
    return params, J, grad, drops, {"family": "logistic", "d": dd, "m": m, "lam": lam}


def family_mlp(rng, ps, complex_only):
    """Squared error of a one-hidden-layer MLP, tanh or ReLU (no pre-activation near 0)."""
    act = "tanh" if (complex_only or rng.random() < 0.5) else "relu"
    for _try in range(200):
        dd = int(rng.integers(1, 7))
        h = int(rng.integers(1, 8))
        m = int(rng.integers(1, 7))
        X = rng.standard_normal((dd, m)) / (ps * np.sqrt(dd))
        W1 = ps * rng.standard_normal((h, dd))
        b1 = ps * rng.standard_normal(h)
        Z = W1 @ X + b1[:, None]
        rms = np.sqrt(np.mean(Z**2)) + 1e-300
        if act == "tanh" or np.min(np.abs(Z)) > 0.05 * rms:
            break
    W2 = ps * rng.standard_normal(h)
    y = ps * rng.standard_normal(m)
    params = {"W1": W1, "b1": b1, "W2": W2}

    def J(p):
        f32 = p["W1"].dtype == np.float32
        Xc, yc = (X.astype(np.float32), y.astype(np.float32)) if f32 else (X, y)
        Z = p["W1"] @ Xc + p["b1"][:, None]
        A = np.tanh(Z) if act == "tanh" else np.maximum(Z, 0)
        out = p["W2"] @ A
        return 0.5 * np.mean((out - yc) ** 2)

    def grad(p, drop=None):
        Z = p["W1"] @ X + p["b1"][:, None]
        A = np.tanh(Z) if act == "tanh" else np.maximum(Z, 0.0)
        out = p["W2"] @ A
        dout = (out - y) / m
        gW2 = A @ dout
        dA = np.outer(p["W2"], dout)
        dZ = dA if drop == "act" else dA * ((1 - A**2) if act == "tanh" else (Z > 0))
        return {"W1": dZ @ X.T, "b1": dZ.sum(1), "W2": gW2}

    margin = float(np.min(np.abs(Z)) / rms)
    info = {"family": "mlp", "act": act, "d": dd, "h": h, "m": m, "relu_margin": margin}
    return params, J, grad, ["act"], info


FAMILIES = [family_sum, family_sum, family_logistic, family_mlp]


def phash(p):
    """A deterministic number in [-1, 1) from the bits of the parameters."""
    h = hashlib.blake2b(digest_size=8)
    for k in sorted(p):
        h.update(np.ascontiguousarray(p[k]).tobytes())
    return int.from_bytes(h.digest(), "little") / 2**64 * 2 - 1


def _coarse(prec, smooth, raw, c, off, noise_a):
    """The cost the checker sees: ``smooth`` as the configuration's precision gives it."""
    if prec == "f64":
        return smooth

    def cost(p):
        if prec == "f16":
            return float(np.float16(smooth(p)))
        if prec == "f32in":
            p32 = {k: v.astype(np.float32) for k, v in p.items()}
            return float(np.float32(c) * raw(p32) + np.float32(off))
        if prec == "round3":
            return float(np.round(smooth(p), 3))
        J = smooth(p)  # noise
        return float(J * (1 + noise_a * phash(p)))

    return cost


def _wrong(rng, true, drops, G):
    """The wrong gradients, each as ``(label, grads)``."""
    nz = [k for k in true if np.any(true[k] != 0)]
    wrongs = []
    for kind in WRONG_KINDS:
        if kind == "drop":
            if not drops:
                continue
            dr = drops[int(rng.integers(len(drops)))]
            wrongs.append((kind + ":" + str(dr), G(dr)))
            continue
        if not nz:
            continue
        t = nz[int(rng.integers(len(nz)))]
        gw = {k: v.copy() for k, v in true.items()}
        if kind == "elems":
            n = gw[t].size
            ne = int(rng.integers(1, min(3, n) + 1))
            idx = rng.choice(n, size=ne, replace=False)
            r = float(rng.choice([1e-3, 1e-2, 0.3]))
            flat = gw[t].reshape(-1)
            flat[idx] += r * np.max(np.abs(true[t])) * rng.choice([-1, 1], size=ne)
            wrongs.append((f"elems:{t}:{ne}@{r:g}:{list(map(int, idx))}", gw))
            continue
        gw[t] *= {"x2": 2, "x1.3": 1.3, "x1.05": 1.05, "sign": -1}[kind]
        wrongs.append((f"{kind}:{t}", gw))
    return wrongs


def build(case):
    """Case ``case``: its parameters, cost (and the smooth float64 one), gradients, options."""
    rng = np.random.default_rng(case)
    prec, optname = CONFIGS[case % len(CONFIGS)]
    opts = dict(OPT[optname])
    if optname == "sample":
        opts["k"] = int(rng.choice([1, 2, 4, 8, 32]))
    ps = loguniform(rng, 1e-6, 1e3)
    cplx = optname == "complex"
    fam = FAMILIES[int(rng.integers(len(FAMILIES)))]
    params, raw, grad, drops, info = fam(rng, ps, cplx)
    # the cost's size, and an offset
    g0 = grad(params)
    scale_target = loguniform(rng, 0.1, 1000)
    c = scale_target / max(abs(float(np.real(raw(params)))), 1e-300)
    if not np.isfinite(c) or c > 1e300:
        c = 1.0
    off = 0.0
    if rng.random() < 0.3:
        off = float(rng.choice([-1, 1]) * loguniform(rng, 1, 1000) * scale_target)
        if prec == "f16":
            off = float(np.clip(off, -3e4, 3e4))
    noise_a = loguniform(rng, 1e-9, 1e-6)

    def smooth(p):
        return c * raw(p) + off

    cost = _coarse(prec, smooth, raw, c, off, noise_a)
    true = {k: c * v for k, v in g0.items()}

    def G(drop=None):
        return {k: c * v for k, v in grad(params, drop).items()}

    wrongs = _wrong(rng, true, drops, G)
    meta = dict(
        case=case,
        prec=prec,
        opt=optname,
        opts=opts,
        ps=ps,
        c=c,
        off=off,
        J0=float(np.real(smooth(params))),
        noise_a=noise_a if prec == "noise" else None,
        shapes={k: list(v.shape) for k, v in params.items()},
        **info,
    )
    return dict(
        params=params, cost=cost, smooth=smooth, true=true, wrongs=wrongs, opts=opts, meta=meta
    )


# ---------------------------------------------------------------------------------------
# Checking and classifying.


def reldiff(a, b):
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return 0.0 if na + nb == 0 else float(np.linalg.norm(a - b) / (na + nb))


def truncation(cd):
    """Per tensor: the smooth cost's finite difference at the given step, in long double,
    against the true gradient (the step's own error, which no checker can remove)."""
    eps, method = cd["opts"]["eps"], cd["opts"].get("method", "central")
    sm, true = cd["smooth"], cd["true"]
    P = {k: v.astype(np.longdouble) for k, v in cd["params"].items()}
    J0 = sm(P)
    out = {}
    for k, v in P.items():
        fd = np.zeros(v.size, dtype=np.longdouble)
        for i in range(v.size):
            p1 = {kk: vv.copy() for kk, vv in P.items()}
            p2 = {kk: vv.copy() for kk, vv in P.items()}
            p1[k].reshape(-1)[i] += eps
            p2[k].reshape(-1)[i] -= eps
            if method == "forward":
                fd[i] = (sm(p1) - J0) / eps
            elif method == "backward":
                fd[i] = (J0 - sm(p2)) / eps
            else:
                fd[i] = (sm(p1) - sm(p2)) / (2 * eps)
        out[k] = reldiff(fd.astype(float), true[k].reshape(-1))
    return out


def visibility(cd, grads, k):
    """max over elements of |bug_i| h_i / (u |J|): above 1, the bug moves the cost by more
    than one float64 rounding at the automatic central step."""
    P, true = cd["params"], cd["true"]
    J = abs(float(np.real(cd["smooth"](P)))) + 1e-300
    h = 6.06e-6 * np.maximum(1, np.abs(P[k]))
    return float(np.max(np.abs(grads[k] - true[k]) * h / (U * J)))


class Recorder:
    """Wraps a cost; records which single coordinates were perturbed (sample mode)."""

    def __init__(self, cost, params):
        self.cost, self.base = cost, {k: v.copy() for k, v in params.items()}
        self.seen = {k: set() for k in params}

    def __call__(self, p):
        diffs = []
        for k, v in p.items():
            d = np.flatnonzero(np.asarray(v).reshape(-1) != self.base[k].reshape(-1))
            diffs += [(k, int(i)) for i in d]
        if len(diffs) == 1:
            self.seen[diffs[0][0]].add(diffs[0][1])
        return self.cost(p)


def _row(t, given, true):
    """What the classification reads of one tensor's row."""
    return dict(
        passed=bool(t.passed),
        undecided=bool(t.undecided),
        acc=t.accuracy,
        diff=t.difference,
        d_true=reldiff(given, true),
        checked=t.checked,
        pattern=t.explanation.pattern if t.explanation else None,
        kinks=len(t.kinks),
        unsettled=len(t.unsettled),
        gzero=bool(not np.any(given)),
        tzero=bool(not np.any(true)),
    )


def check_one(cd, label, grads, text=False):
    """One check: its verdict, and ``finding`` (false_alarm, false_pass, fail_other,
    undecided or None) with the rows it concerns."""
    params, opts, true = cd["params"], cd["opts"], cd["true"]
    rec = Recorder(cd["cost"], params) if opts.get("mode") == "sample" else None
    t0 = time.time()
    try:
        rep = gp.check(rec or cd["cost"], params, grads, **opts)
    except Exception as e:
        return dict(label=label, error=f"{type(e).__name__}: {e}"[:400], secs=time.time() - t0)
    rows = {k: _row(t, grads[k], true[k]) for k, t in rep.tensors.items()}
    res = dict(
        label=label,
        passed=bool(rep.passed),
        undecided=bool(rep.undecided),
        evals=rep.evaluations,
        secs=time.time() - t0,
    )
    if label == "right":
        wrong_rows = [k for k, r in rows.items() if not r["passed"] and not r["undecided"]]
        if wrong_rows:
            res.update(finding="false_alarm", of=wrong_rows)
        elif not rep.passed and not rep.undecided:
            res["finding"] = "fail_other"
        elif rep.undecided:
            res["finding"] = "undecided"
    elif rep.passed:
        bad = [k for k, r in rows.items() if r["d_true"] > (TOL if r["acc"] is None else r["acc"])]
        if bad:
            res.update(finding="false_pass", of=bad)
            if rec is not None:  # did the sample perturb any wrong element?
                res["sample_saw_wrong"] = any(
                    int(i) in rec.seen[k]
                    for k in bad
                    for i in np.flatnonzero(grads[k].reshape(-1) != true[k].reshape(-1))
                )
    elif rep.undecided:
        res["finding"] = "undecided"
    if res.get("finding") in ("false_alarm", "false_pass"):
        res["rows"] = {k: rows[k] for k in res["of"]}
    if text or "rows" in res:
        res["text"] = str(rep)[:3000]
    return res


def kind_of(case, meta, r, trunc, vis):
    """The kind of a false alarm or false pass (``r``: check_one's record)."""
    prec, opt = meta["prec"], meta["opt"]
    user = "eps" in meta["opts"]
    k0 = r["of"][0]
    row = r["rows"][k0]
    tr = (trunc or {}).get(k0, 0.0)
    if r["finding"] == "false_alarm":
        if case in HARNESS_ARTIFACTS:
            return "FA-x harness artifact (its sigmoid underflows)"
        if row["pattern"] == "flat":
            return "FA-1 coarse cost: 'the cost ignores params'"
        if user and tr > 0.1 * TOL:
            return "FA-U user-step (truncation of the smooth cost at eps > 1e-8)"
        if opt == "complex":
            return "FA-3 complex step: saturated tanh, analytic 1-tanh^2 is 0 or inexact"
        if prec == "f64":
            return "FA-4 exact f64 ReLU, params ~1e-6: step crosses ties"
        return "FA-2 coarse cost: row WRONG with a diagnosis"
    if opt == "sample" and r.get("sample_saw_wrong") is False:
        return "FP-N wrong element never sampled (by design)"
    if user and tr > 0.1 * row["d_true"]:
        return "FP-U user-step (truncation at eps >= 0.1 x the bug)"
    tag = ""
    if prec == "f64":
        seen = (vis or {}).get(k0, 0) > 10
        tag = " [f64, bug above round-off]" if seen else " [f64, bug below round-off at auto step]"
    if row["kinks"] or "crossed a kink" in r["text"]:
        left = "directions" if opt == "directional" else "elements"
        return f"FP-{1 if opt == 'directional' else 2} {left} left out as kinks{tag}"
    if row["acc"] is not None:
        return "FP-6 accuracy claimed < true error" + tag
    if row["pattern"] in ("numerics", "steep"):
        return "FP-3 cleared as 'the finite differences' own error', no accuracy" + tag
    if row["pattern"] == "roundoff":
        return "FP-4 'zero within round-off' while true gradient non-zero" + tag
    if row["gzero"] and row["diff"] == 0:
        return "FP-5 analytic zero (dropped gradient) passes, difference 0" + tag
    return "FP-7 other (difference <= tol, true error just above tol)" + tag


def run_case(case, text=False):
    """Every check of one case, each finding with its kind (``text``: every report's)."""
    cd = build(case)
    checks = [check_one(cd, lb, g, text) for lb, g in [("right", cd["true"]), *cd["wrongs"]]]
    found = [r for r in checks if r.get("finding") in ("false_alarm", "false_pass")]
    trunc = truncation(cd) if found and "eps" in cd["opts"] else None
    for r in found:
        vis = None
        if r["finding"] == "false_pass":
            g = dict(cd["wrongs"])[r["label"]]
            vis = {k: visibility(cd, g, k) for k in r["of"]}
        r["kind"] = kind_of(case, cd["meta"], r, trunc, vis)
    return dict(case=case, meta=cd["meta"], truncation=trunc, checks=checks)


# ---------------------------------------------------------------------------------------
# The table.

COLUMNS = (  # (key, heading, width)
    ("cases", "cases", 6),
    ("right", "checks", 8),
    ("right passed", "passed", 8),
    ("FA", "WRONG", 7),
    ("FA user", "user", 6),
    ("wrong", "checks", 9),
    ("wrong passed", "passed", 8),
    ("FP", "beyond", 8),
    ("FP user", "user", 6),
    ("FP unsampled", "unsampled", 10),
    ("errors", "errors", 8),
)


def _tally(cases):
    """Per configuration: the counts of COLUMNS, the false passes by wrong gradient, and
    each kind's checks ("case label")."""
    n = collections.defaultdict(collections.Counter)
    by_wrong = collections.defaultdict(collections.Counter)
    kinds = collections.defaultdict(lambda: collections.defaultdict(list))
    for o in cases:
        cfg = f"{o['meta']['prec']}/{o['meta']['opt']}"
        n[cfg]["cases"] += 1
        for r in o["checks"]:
            side = "right" if r["label"] == "right" else "wrong"
            n[cfg][side] += 1
            if "error" in r:
                n[cfg]["errors"] += 1
                continue
            n[cfg][side + " passed"] += r["passed"]
            n[cfg]["fail_other"] += r.get("finding") == "fail_other"
            kind = r.get("kind")
            if kind is None:
                continue
            kinds[kind][cfg].append(f"{o['case']} {r['label']}")
            what = {"U": " user", "N": " unsampled", "x": " harness"}.get(kind[3], "")
            n[cfg][kind[:2] + what] += 1
            if kind[:2] == "FP" and not what:
                by_wrong[cfg][r["label"].split(":")[0]] += 1
    return n, by_wrong, kinds


def _wrapped(items, width=96):
    line = "   "
    for item in items:
        if len(line) + len(item) > width:
            print(line.rstrip(";"))
            line = "   "
        line += " " + item + ";"
    print(line.rstrip(";"))


def table(path):
    lines = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    head = next((o["run"] for o in lines if "run" in o), None)
    tail = next((o["done"] for o in lines if "done" in o), None)
    cases = [o for o in lines if "case" in o]
    n, by_wrong, kinds = _tally(cases)
    if head:
        print(
            f"gradproof {head['commit']}, started {head['started']}, budget {head['budget']} s",
            end="",
        )
        print(f": {tail['cases']} cases in {tail['seconds']} s" if tail else " (unfinished)")
    first = min((o["case"] for o in cases), default=0)
    last = max((o["case"] for o in cases), default=-1)
    print(f"cases {first}..{last}: {sum(len(o['checks']) for o in cases)} checks\n")
    print(f"{'':25}right gradient{'':20}wrong gradient")
    print(f"{'config':<19}" + "".join(f"{h:>{w}}" for _, h, w in COLUMNS))
    order = [f"{p}/{o}" for p, o in CONFIGS if f"{p}/{o}" in n]
    total = collections.Counter()
    for cfg in order:
        total.update(n[cfg])
    for cfg, c in [*((cfg, n[cfg]) for cfg in order), ("total", total)]:
        print(f"{cfg:<19}" + "".join(f"{c[k]:>{w}}" for k, _, w in COLUMNS))
    print("\nWRONG: false alarms (a right gradient's row WRONG). beyond: false passes (passed,")
    print("a true difference above the accuracy claimed). user: the same at a given eps where")
    print("the step's own truncation explains it, not counted in WRONG or beyond. unsampled:")
    print("sample-mode passes that never perturbed a wrong element (by design).")
    if total["fail_other"] or total["FA harness"]:
        print(f"Right gradients failed with no row WRONG: {total['fail_other']}; harness artifacts")
        print(f"(case {sorted(HARNESS_ARTIFACTS)}), not counted: {total['FA harness']}.")
    print("\nfalse passes (beyond) by wrong gradient")
    print(f"{'config':<19}" + "".join(f"{k:>7}" for k in WRONG_KINDS))
    for cfg in order:
        if by_wrong[cfg]:
            print(f"{cfg:<19}" + "".join(f"{by_wrong[cfg][k]:>7}" for k in WRONG_KINDS))
    print("\nby kind: checks/all checks of that side, per configuration; the first case of each")
    for kind in sorted(kinds):
        byc = kinds[kind]
        side = "right" if kind.startswith("FA") else "wrong"
        found = [x for v in byc.values() for x in v]
        ncase = len({x.split()[0] for x in found})
        print(f"\n{kind}: {len(found)} checks in {ncase} cases")
        _wrapped(f"{cfg} {len(byc[cfg])}/{n[cfg][side]}" for cfg in order if cfg in byc)
        print(f"    e.g. case {min(found, key=lambda x: int(x.split()[0]))}")


# ---------------------------------------------------------------------------------------


def _git(where, *args):
    return subprocess.run(
        ["git", "-C", where, *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def _commit():
    """HEAD of the gradproof imported, with '+modified' where its source differs."""
    where = str(Path(gp.__file__).parent)
    try:
        head = _git(where, "rev-parse", "--short", "HEAD")
        changed = _git(where, "status", "--porcelain", ".")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+modified" if changed else "")


def run(budget, out, start):
    t0 = time.time()
    case = start
    with open(out, "w") as f:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()) + " UTC"
        head = {"commit": _commit(), "started": started, "budget": budget, "start": start}
        f.write(json.dumps({"run": head}) + "\n")
        while time.time() - t0 < budget:
            f.write(json.dumps(run_case(case), default=str) + "\n")
            f.flush()
            case += 1
        done = {"cases": case - start, "seconds": round(time.time() - t0, 1)}
        f.write(json.dumps({"done": done}) + "\n")
    print(f"ran {case - start} cases in {time.time() - t0:.1f} s -> {out}")


def show_case(case):
    o = run_case(case, text=True)
    print(json.dumps(o["meta"], default=str))
    for r in o["checks"]:
        if "error" in r:
            print(f"\n{r['label']}: raised {r['error']}")
            continue
        print(f"\n{r['label']}: {r['evals']} evaluations, {r['secs']:.2f} s")
        if "kind" in r:
            print(f"  {r['finding']}: {r['kind']}")
            print("  rows:", json.dumps(r["rows"], default=str))
            print("  " + r["text"].replace("\n", "\n  "))
        else:
            print("  " + r["text"].splitlines()[0])
    if o["truncation"] is not None:
        print("\nthe step's own truncation per tensor:", o["truncation"])


def main():
    warnings.simplefilter("ignore")  # overflow in float16, the complex step's warnings
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="check cases 0, 1, 2, ... until the budget is spent")
    p.add_argument("--budget", type=float, default=600, help="seconds (default 600)")
    p.add_argument("--out", default="verdict_fuzz.jsonl")
    p.add_argument("--start", type=int, default=0, help="first case (default 0)")
    p = sub.add_parser("case", help="one case, every check, verbose")
    p.add_argument("n", type=int)
    p = sub.add_parser("table", help="the table of a run's file")
    p.add_argument("file")
    args = parser.parse_args()
    if args.command == "run":
        run(args.budget, args.out, args.start)
    elif args.command == "case":
        show_case(args.n)
    else:
        table(args.file)


if __name__ == "__main__":
    sys.exit(main())

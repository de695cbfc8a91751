"""Where an error enters the backward pass, inferred from the layer order of the parameters.

A backward pass runs from the last layer to the first, and each layer's ``dZ`` is made
from the one above it: a single mistake corrupts every gradient computed after it. When
the parameters are named by layer (``W1 ... WL``, ``b1 ... bL`` as the seeds name them,
or paths with a layer number: ``layers.0.W``, ``2.weight``) and the failures form one
block (every parameter of the layers from some layer down to the first wrong, every
layer above it right), one mistake explains them all: it enters at that layer's ``dZ``
(between the ``dZ`` above and it: its ``dA``, or its activation's derivative), its own
parameters are wrong there and the layers below only inherit it. Failures of any other
shape (a wrong ``dW`` alone, two separate slips) are left to each parameter's diagnosis.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from . import _policy

# "W2", "b10", "gamma3": a layer's weight, bias or normalization and the layer number,
# as the seeds name them (not any name ending in a number: "x1", "theta0", "input1").
_SEEDS_NAME = re.compile(r"^(?P<kind>W|b|gamma|beta)(?P<layer>\d+)$")
# "layers.0.W", "2.weight", "layer3.W": a path component that is a layer's number, alone
# (a Sequential's index) or after "layer"/"layers" (not "head1", "conv1": other stems
# name different kinds of module, not one sequence).
_PATH_PART = re.compile(r"^(?P<stem>layers?_?|)(?P<layer>\d+)$")
# A layer's own weight: one shared error in its dZ shows in it (a layer without one is
# no evidence of where an error enters).
_WEIGHT = re.compile(r"(^W\d+$)|((^|\.)(W|weight|kernel)$)")


@dataclass(frozen=True)
class Origin:
    """Where one error enters the backward pass.

    Attributes:
        layer: the layer it enters at, as the parameters name it (``"2"``, ``"layers.1"``).
        there: the parameters wrong at that layer (their gradients are made from its ``dZ``).
        inherited: the parameters of the layers below, wrong only through it.
        right: the parameters of the layers above it, right.
        where: where in the backward pass, in words.
        evidence: what the finding rests on.
        name: the layer as a sentence names it, where ``layer`` alone does not say
            (a JAX function's custom rule: ``"softplus (custom_vjp)"``); else empty.
    """

    layer: str
    there: tuple[str, ...]
    inherited: tuple[str, ...]
    right: tuple[str, ...]
    where: str
    evidence: str
    name: str = ""

    @property
    def called(self) -> str:
        """The layer as a sentence names it ("layer 2", "layers.1")."""
        return self.name or called(self.layer)

    @property
    def sentence(self) -> str:
        """The finding as one sentence, for the headline."""
        there = ", ".join(self.there)
        verb = "inherits" if len(self.inherited) == 1 else "inherit"
        inherited = ", ".join(self.inherited)
        if not self.there and not self.inherited:  # (what fails upstream is not vouched for)
            return f"an error enters at {self.where} ({self.evidence})"
        if not self.there:  # a module without parameters of its own (an activation)
            return f"the error enters at {self.where}: {inherited} {verb} it ({self.evidence})"
        inherit = f" and {inherited} {verb} it" if self.inherited else ""
        return (
            f"the error enters at {self.where}: {there} "
            f"{'are' if len(self.there) > 1 else 'is'} wrong there{inherit} ({self.evidence})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "there": list(self.there),
            "inherited": list(self.inherited),
            "right": list(self.right),
            "where": self.where,
            "evidence": self.evidence,
            "called": self.called,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Origin:
        return cls(
            layer=d["layer"],
            there=tuple(d["there"]),
            inherited=tuple(d["inherited"]),
            right=tuple(d["right"]),
            where=d["where"],
            evidence=d["evidence"],
            name=d.get("called", "") if d.get("called") != called(d["layer"]) else "",
        )


@dataclass(frozen=True)
class _Layer:
    key: tuple[str, int]  # (the path before the number, the number): orders the layers
    label: str  # as the user names it: "2", "layers.1"
    seeds: bool  # named as the seeds name them (W2, b2): dZ2, dA2 can be said
    names: tuple[str, ...]


def _layer_of(name: str) -> tuple[tuple[str, int], str, bool] | None:
    match = _SEEDS_NAME.match(name)
    if match:
        layer = match["layer"]
        return ("", int(layer)), layer, True
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        found = _PATH_PART.match(part)
        if found:
            stem = ".".join([*parts[:i], found["stem"]])
            return (stem, int(found["layer"])), ".".join(parts[: i + 1]), False
    return None


def _layers(names: list[str]) -> list[_Layer] | None:
    """The parameters grouped by layer, first layer first; ``None`` unless every
    parameter belongs to a layer of one numbered sequence, and there are two or more."""
    by_key: dict[tuple[str, int], list[str]] = {}
    labels: dict[tuple[str, int], tuple[str, bool]] = {}
    for name in names:
        found = _layer_of(name)
        if found is None:
            return None
        key, label, seeds = found
        by_key.setdefault(key, []).append(name)
        labels[key] = (label, seeds)
    if len(by_key) < 2 or len({stem for stem, _ in by_key}) != 1:
        return None
    return [
        _Layer(key, labels[key][0], labels[key][1], tuple(by_key[key])) for key in sorted(by_key)
    ]


def infer(
    failed: dict[str, bool], undecided: set[str], scales: dict[str, float] | None = None
) -> Origin | None:
    """Where one error enters, from which parameters failed (``failed``, by name, in the
    order of params); ``None`` where the layer order explains nothing or nothing failed.
    ``scales``: each failed parameter's factor, where its diagnosis is one (analytic =
    s × numeric): one error in a layer's dZ scales its weight and bias alike."""
    layers = _layers(list(failed))
    if layers is None or undecided or not any(failed.values()):
        return None
    if not all(any(_WEIGHT.search(n) for n in layer.names) for layer in layers):
        return None
    wrong = [all(failed[n] for n in layer.names) for layer in layers]
    right = [not any(failed[n] for n in layer.names) for layer in layers]
    # the highest layer with a failure: everything above it right, it and below all wrong
    top = max(i for i, layer in enumerate(layers) if not right[i])
    if not all(wrong[: top + 1]) or not all(right[top + 1 :]):
        return None
    entry = layers[top]
    if len(entry.names) < 2:
        return None  # one parameter where it enters: a block is no evidence of one error
    if scales is not None and _different_factors([scales.get(n) for n in entry.names]):
        return None  # two factors in one layer: two slips, not one error in its dZ
    below = [n for layer in layers[:top] for n in layer.names]
    above = [n for layer in layers[top + 1 :] for n in layer.names]
    where = _where(entry, layers[top + 1] if top + 1 < len(layers) else None)
    kept = f"{called(layers[top + 1].label)} is right, " if above else ""
    wrong_part = (
        f"every layer from {called(entry.label)} down is wrong"
        if below
        else f"all of {called(entry.label)}'s parameters are wrong"
    )
    evidence = f"inferred from the layer order: {kept}{wrong_part}"
    return Origin(entry.label, entry.names, tuple(below), tuple(above), where, evidence)


def _different_factors(factors: list[float | None]) -> bool:
    found = [f for f in factors if f is not None]
    return len(found) >= 2 and max(found) - min(found) > _policy.FACTOR_AGREEMENT * max(
        map(abs, found)
    )


def called(label: str) -> str:
    """A layer as a sentence names it: "layer 2", "layers.1" (a path says "layer" itself),
    "module encoder.mix" (a submodule named otherwise)."""
    if label.startswith("layer"):
        return label
    return f"layer {label}" if label.rsplit(".", 1)[-1].isdigit() else f"module {label}"


def _where(entry: _Layer, above: _Layer | None) -> str:
    k = entry.label
    if not entry.seeds:
        this = called(k)
        if above is None:
            return f"{this}'s backward (the loss's derivative, or {this}'s own)"
        return (
            f"{this}'s backward (the gradient {called(above.label)} passes down, or {this}'s "
            "activation)"
        )
    if above is None:
        return f"dZ{k}, the last layer's (the loss's derivative, or the output activation's)"
    return (
        f"layer {k}'s backward (between dZ{above.label} and dZ{k}: dA{k}, or the "
        f"activation derivative of layer {k})"
    )

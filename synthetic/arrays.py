"""Small numpy helpers of the synthetic generator: weight vectors, CDFs, segments, draws."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def vec(pairs: Any, names: tuple[str, ...], normalise: bool = False) -> np.ndarray:
    """The values of ``(name, value)`` pairs in the order of ``names`` (0 for missing names)."""
    d = dict(pairs)
    v = np.array([float(d.get(n, 0.0)) for n in names])
    return v / v.sum() if normalise else v


def cdf(p: np.ndarray) -> np.ndarray:
    """Normalised cumulative sums along the last axis, for :func:`categorical` draws."""
    c = np.cumsum(p, axis=-1)
    c = c / c[..., -1:]
    c[..., -1] = 1.0 + 1e-12  # guard against u == 1 rounding
    return c


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return math.log(p / (1 - p))


def seg_starts(counts: np.ndarray) -> np.ndarray:
    """Start offsets of consecutive segments with the given lengths."""
    starts = np.zeros(len(counts), np.int64)
    if len(counts) > 1:
        np.cumsum(counts[:-1], out=starts[1:])
    return starts


def seg_cumsum(x: np.ndarray, starts: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum of x within segments (x at segment starts should be 0)."""
    c = np.cumsum(x)
    return c - c[starts][owner]


def categorical(rng: np.random.Generator, cum: np.ndarray, n: int) -> np.ndarray:
    """``n`` category indices drawn from the :func:`cdf` ``cum`` (one ``rng.random(n)`` draw)."""
    return np.searchsorted(cum, rng.random(n), side="right")

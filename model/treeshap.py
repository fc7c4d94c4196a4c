"""Exact path-dependent TreeSHAP values of a one-output LightGBM booster by table lookup (the
"Fast TreeSHAP v2" idea of Yang, 2021, arXiv:2109.09847), compiled with numba.

LightGBM's ``pred_contrib`` walks every tree with the recursive TreeSHAP algorithm (Lundberg et
al., 2020): O(leaves x depth^2) per tree and row. The same values follow from a per-leaf game:
a leaf ``l`` with value ``v``, unique path features ``F`` (``d`` of them), ``z_j`` the product of
the cover fractions of the path's splits on ``j`` and ``o_j`` = 1 when the row follows every split
on ``j`` along the path, contributes to the model's expectation given the features in ``S``
``v * prod_{j in S} o_j * prod_{j in F - S} z_j``. Its Shapley value for ``i`` depends on the row
only through the bit mask ``o`` (2^d values), so it is computed once per leaf and mask when the
explainer is built, and a row costs a walk over the path splits plus one lookup per leaf and path
feature: O(leaves x depth) per tree, without the recursion. The bias column is the model's
expectation with no feature known.

The values equal LightGBM's up to floating-point summation order: ``tests/model/test_treeshap.py``
compares them on trained models (missing values, repeated features on a path, one-leaf trees)
within 1e-9 absolute. Tables take ``sum over leaves of 2^d * d`` doubles; a booster whose tables
would pass :data:`MAX_TABLE_BYTES` gets no explainer and its caller uses LightGBM's
``pred_contrib``. Splits are decided as LightGBM's ``Tree::Decision`` (numerical with its missing
types, and categorical)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np

MAX_TABLE_BYTES = 256 * 2**20  # per booster; beyond this LightGBM's own TreeSHAP is used
MAX_PATH_FEATURES = 16  # unique features on one leaf's path (the table has 2^d rows)
_MISSING = {"None": 0, "Zero": 1, "NaN": 2}  # LightGBM's missing types (tree.h)
_CATEGORICAL = 3
_ZERO = 1e-35  # LightGBM's kZeroThreshold
_INT_LIMIT = 2.0**31  # static_cast<int> of larger values (and NaN) is INT_MIN on x86: right


@dataclass(frozen=True)
class TreeExplainer:
    """The flattened trees and per-leaf tables of one booster; ``self(X)`` -> (n, n_features + 1)
    contributions, last column the bias, as ``booster.predict(X, pred_contrib=True)``."""

    n_features: int
    bias: float
    node_feature: np.ndarray  # per split node
    node_threshold: np.ndarray
    node_default_left: np.ndarray
    node_missing: np.ndarray  # 0 none, 1 zero, 2 NaN; 3: a categorical split
    node_categories: np.ndarray  # per split node: where its categories start in categories, (nodes + 1,)
    categories: np.ndarray  # the categories that go left (categorical splits)
    leaf_paths: np.ndarray  # per leaf with d >= 1: start of its splits in path_*, (leaves + 1,)
    path_node: np.ndarray  # per split on a leaf's path: the node, the side taken, the feature's slot
    path_left: np.ndarray
    path_slot: np.ndarray
    leaf_slots: np.ndarray  # per leaf: start of its unique features in slot_feature, (leaves + 1,)
    slot_feature: np.ndarray
    leaf_table: np.ndarray  # per leaf: where its (2^d, d) table starts in table
    table: np.ndarray

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got an array of shape {X.shape}")
        out = np.zeros((len(X), self.n_features + 1))
        out[:, -1] = self.bias
        _kernel()(X, self.node_feature, self.node_threshold, self.node_default_left, self.node_missing, self.node_categories,
                 self.categories, self.leaf_paths,
                 self.path_node, self.path_left, self.path_slot, self.leaf_slots, self.slot_feature, self.leaf_table,
                 self.table, out)
        return out


def tree_explainer(booster: lgb.Booster, num_iteration: int | None) -> TreeExplainer | None:
    """The explainer of a one-output ``booster``'s first ``num_iteration`` trees (None: the
    booster's best iteration, as ``Booster.predict``), or None when it has none (see the module)."""
    if booster.num_model_per_iteration() != 1:
        raise ValueError("tree_explainer needs a one-output booster (a multiclass model: one per class)")
    iterations = booster.best_iteration if num_iteration is None else num_iteration
    dump = booster.dump_model(num_iteration=int(iterations) if iterations and iterations > 0 else None)
    parts = _Parts()
    for tree in dump["tree_info"]:
        if not _add_tree(parts, tree["tree_structure"]):
            return None
    if parts.table_doubles * 8 > MAX_TABLE_BYTES:
        return None
    return parts.build(booster.num_feature())


class _Parts:
    """What the trees' walk collects, then :meth:`build` makes the arrays and tables."""

    def __init__(self):
        self.bias = 0.0
        self.nodes: list[tuple[int, float, bool, int]] = []
        self.categories: list[list[int]] = []  # per node (empty for numerical splits)
        self.leaves: list[tuple[float, list[tuple[int, bool, int]], list[int], list[float]]] = []
        self.table_doubles = 0

    def build(self, n_features: int) -> TreeExplainer:
        node = np.array(self.nodes, dtype=np.float64).reshape(-1, 4)
        paths = [p for _, p, _, _ in self.leaves]
        feats = [f for _, _, f, _ in self.leaves]
        d = np.array([len(f) for f in feats], dtype=np.int64)
        leaf_table = np.zeros(len(d), dtype=np.int64)
        leaf_table[1:] = np.cumsum((2**d) * d)[:-1]
        table = np.zeros(int(((2**d) * d).sum()))
        for size in np.unique(d):
            at = np.flatnonzero(d == size)
            values = np.array([self.leaves[i][0] for i in at])
            z = np.array([self.leaves[i][3] for i in at]).reshape(len(at), int(size))
            blocks = leaf_tables(values, z)
            for i, block in zip(at, blocks):
                table[leaf_table[i]: leaf_table[i] + block.size] = block.ravel()
        return TreeExplainer(
            n_features, self.bias, node[:, 0].astype(np.int64), node[:, 1].copy(), node[:, 2].astype(np.bool_),
            node[:, 3].astype(np.int64), _starts([len(c) for c in self.categories]),
            np.array([c for cs in self.categories for c in cs], dtype=np.int64), _starts([len(p) for p in paths]),
            np.array([n for p in paths for n, _, _ in p], dtype=np.int64),
            np.array([left for p in paths for _, left, _ in p], dtype=np.bool_),
            np.array([s for p in paths for _, _, s in p], dtype=np.int64),
            _starts(list(d)), np.array([j for f in feats for j in f], dtype=np.int64), leaf_table, table)


def _add_tree(parts: _Parts, root: dict) -> bool:
    """Walk one tree of a LightGBM JSON dump into ``parts``; False when a leaf has more than
    :data:`MAX_PATH_FEATURES` path features."""
    if "leaf_index" not in root and "split_index" not in root:  # a one-leaf tree: a constant
        parts.bias += float(root["leaf_value"])
        return True
    stack = [(root, [], [], [], 1.0)]  # node, path splits, unique features, their z, prob of reaching
    while stack:
        node, path, feats, zs, reach = stack.pop()
        if "leaf_index" in node:
            value = float(node["leaf_value"])
            parts.bias += value * reach
            if len(feats) > MAX_PATH_FEATURES:
                return False
            parts.leaves.append((value, path, feats, zs))
            parts.table_doubles += (2 ** len(feats)) * len(feats)
            continue
        index = len(parts.nodes)
        feature = int(node["split_feature"])
        if node["decision_type"] == "==":  # categorical: the categories that go left, "1||3||11"
            parts.nodes.append((feature, 0.0, False, _CATEGORICAL))
            parts.categories.append(sorted(int(c) for c in str(node["threshold"]).split("||")))
        else:
            parts.nodes.append((feature, float(node["threshold"]), bool(node["default_left"]), _MISSING[node["missing_type"]]))
            parts.categories.append([])
        count = float(node["internal_count"])
        for child, left in ((node["left_child"], True), (node["right_child"], False)):
            fraction = _count(child) / count
            if feature in feats:
                slot = feats.index(feature)
                child_zs = list(zs)
                child_zs[slot] *= fraction
                child_feats = feats
            else:
                slot, child_zs, child_feats = len(feats), zs + [fraction], feats + [feature]
            stack.append((child, path + [(index, left, slot)], child_feats, child_zs, reach * fraction))
    return True


def _count(node: dict) -> float:
    return float(node["leaf_count"] if "leaf_index" in node else node["internal_count"])


def _starts(sizes: list[int]) -> np.ndarray:
    out = np.zeros(len(sizes) + 1, dtype=np.int64)
    out[1:] = np.cumsum(sizes)
    return out


def leaf_tables(values: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Shapley values of the leaf games of :mod:`this module <journey_stage.model.treeshap>` for
    leaves with the same number ``d`` of path features: (leaves, 2^d, d); ``[l, o, i]`` is feature
    slot ``i``'s value for leaf ``l`` when the row follows the splits of the slots set in ``o``.

    With ``A`` the slots set in ``o``, ``Q = A - {i}`` and ``B`` the others but ``i``:
    ``v * (o_i - z_i) * prod_{j in B} z_j * sum_k w(|Q| - k) e_k(z_Q)``, where ``e_k`` is the k-th
    elementary symmetric polynomial (the absent features of ``Q``) and ``w(s) = s!(d-1-s)!/d!``."""
    n, d = z.shape
    masks = np.arange(2**d)
    bits = ((masks[:, None] >> np.arange(d)) & 1).astype(bool)  # (2^d, d)
    w = np.array([math.factorial(s) * math.factorial(d - 1 - s) / math.factorial(d) for s in range(d)])
    out = np.empty((n, 2**d, d))
    degree = np.arange(d)
    for i in range(d):
        others = [j for j in range(d) if j != i]
        e = np.zeros((n, 2**d, d))
        e[..., 0] = 1.0
        absent = np.ones((n, 2**d))
        for j in others:
            zq = z[:, None, j] * bits[None, :, j]
            e[..., 1:] = e[..., 1:] + e[..., :-1] * zq[..., None]
            absent *= np.where(bits[None, :, j], 1.0, z[:, None, j])
        q = bits[:, others].sum(axis=1)  # |Q| per mask
        weights = np.where(degree[None, :] <= q[:, None], w[np.clip(q[:, None] - degree[None, :], 0, d - 1)], 0.0)
        out[..., i] = values[:, None] * (bits[None, :, i] - z[:, None, i]) * absent * (e * weights[None]).sum(axis=-1)
    return out


@functools.cache
def _kernel():
    """:func:`_explain` compiled by numba (imported here: it takes a second, which the commands
    that never explain should not pay); the machine code is cached beside this file."""
    import numba

    return numba.njit(cache=True, nogil=True)(_explain)


def _explain(X, node_feature, node_threshold, node_default_left, node_missing, node_categories, categories, leaf_paths,
             path_node, path_left, path_slot, leaf_slots, slot_feature, leaf_table, table, out):  # pragma: no cover - compiled
    left = np.empty(len(node_feature), dtype=np.bool_)
    for r in range(X.shape[0]):
        for k in range(len(node_feature)):  # LightGBM's Tree::Decision
            x = X[r, node_feature[k]]
            missing = node_missing[k]
            if missing == _CATEGORICAL:  # left when int(x) is one of the node's categories
                left[k] = False
                if not np.isnan(x) and -1.0 < x < _INT_LIMIT:
                    c = int(x)
                    for j in range(node_categories[k], node_categories[k + 1]):
                        if categories[j] == c:
                            left[k] = True
                continue
            if np.isnan(x) and missing != 2:
                x = 0.0
            if (missing == 1 and -_ZERO <= x <= _ZERO) or (missing == 2 and np.isnan(x)):
                left[k] = node_default_left[k]
            else:
                left[k] = x <= node_threshold[k]
        for leaf in range(len(leaf_table)):
            d = leaf_slots[leaf + 1] - leaf_slots[leaf]
            follows = (1 << d) - 1
            for p in range(leaf_paths[leaf], leaf_paths[leaf + 1]):
                if left[path_node[p]] != path_left[p]:
                    follows &= ~(1 << path_slot[p])
            base = leaf_table[leaf] + follows * d
            first = leaf_slots[leaf]
            for s in range(d):
                out[r, slot_feature[first + s]] += table[base + s]

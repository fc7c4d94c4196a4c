"""LightGBM's single-row fast predictor (C API ``LGBM_BoosterPredictForMatSingleRowFastInit`` /
``LGBM_BoosterPredictForMatSingleRowFast``) for the HTTP service's few rows per call.

``Booster.predict`` on one row pays a fixed cost per call (parameter parsing, a new C++ predictor,
Python-side checks) that exceeds the tree walk of a small model. The fast predictor sets that up
once per (booster, prediction type, iterations) and then walks the same trees with the same code:
its outputs are bit-identical to ``Booster.predict`` (``tests/model/test_fastrow.py`` compares
them on raw scores, probabilities and contributions). The lightgbm Python package does not wrap
this part of the C API, so it is called through ctypes, with the package's own library handle."""

from __future__ import annotations

import ctypes
import threading

import lightgbm as lgb
import numpy as np

NORMAL, RAW_SCORE, CONTRIB = 0, 1, 3  # C_API_PREDICT_* of LightGBM's c_api.h
FAST_ROWS = 8  # up to this many rows one fast call per row; more go through Booster.predict
_FLOAT64 = 1  # C_API_DTYPE_FLOAT64
_PARAMS = b"num_threads=1"  # what Booster.predict(..., num_threads=1) passes
_LOCK = threading.Lock()

try:
    from lightgbm.basic import _LIB, _safe_call

    _INIT, _PREDICT, _FREE = (_LIB.LGBM_BoosterPredictForMatSingleRowFastInit, _LIB.LGBM_BoosterPredictForMatSingleRowFast,
                              _LIB.LGBM_FastConfigFree)
except (ImportError, AttributeError):  # another lightgbm build: Booster.predict answers everything
    _INIT = _PREDICT = _FREE = None


class FastRows:
    """One booster's fast single-row predictor for one prediction type; ``self(X)`` -> (n, outputs)
    as ``Booster.predict(X, ..., num_threads=1).reshape(n, -1)``."""

    def __init__(self, booster: lgb.Booster, predict_type: int, num_iteration: int | None):
        # Booster.predict's rule: num_iteration None -> the booster's best iteration (<= 0: all)
        iterations = booster.best_iteration if num_iteration is None else num_iteration
        self.booster = booster  # keeps the C booster alive as long as the fast handle
        self.n_features = booster.num_feature()
        per_row = booster.num_model_per_iteration()
        self.n_out = per_row * (self.n_features + 1) if predict_type == CONTRIB else per_row
        self.handle = ctypes.c_void_p()
        _safe_call(_INIT(booster._handle, ctypes.c_int(predict_type), ctypes.c_int(0), ctypes.c_int(int(iterations)),
                         ctypes.c_int(_FLOAT64), ctypes.c_int32(self.n_features), ctypes.c_char_p(_PARAMS), ctypes.byref(self.handle)))

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.ascontiguousarray(X, dtype=np.float64)
        out = np.empty((len(X), self.n_out))
        n_out = ctypes.c_int64(0)
        as_double = ctypes.POINTER(ctypes.c_double)
        for i in range(len(X)):
            _safe_call(_PREDICT(self.handle, ctypes.c_void_p(X[i].ctypes.data), ctypes.byref(n_out), out[i].ctypes.data_as(as_double)))
            if n_out.value != self.n_out:
                raise ValueError(f"LightGBM returned {n_out.value} values per row, expected {self.n_out}")
        return out

    def __del__(self) -> None:
        handle = getattr(self, "handle", None)
        if handle is not None and handle.value and _FREE is not None:
            _FREE(handle)


def fast_rows(cache: dict, booster: lgb.Booster, predict_type: int, num_iteration: int | None) -> FastRows | None:
    """The cached :class:`FastRows` of ``booster`` (kept in ``cache``), or None when this lightgbm
    build has no fast predictor."""
    if _INIT is None:
        return None
    key = (id(booster), predict_type, num_iteration)
    fast = cache.get(key)
    if fast is None or fast.booster is not booster:
        with _LOCK:
            fast = cache.get(key)
            if fast is None or fast.booster is not booster:
                fast = cache[key] = FastRows(booster, predict_type, num_iteration)
    return fast


def booster_predict(cache: dict, booster: lgb.Booster, X: np.ndarray, predict_type: int, num_iteration: int | None) -> np.ndarray:
    """``booster.predict(X, num_iteration=..., num_threads=1)`` (raw scores, probabilities or
    contributions) as (n, outputs): up to :data:`FAST_ROWS` rows through the fast predictor."""
    X = np.asarray(X, dtype=np.float64)
    if 0 < len(X) <= FAST_ROWS and X.ndim == 2:
        fast = fast_rows(cache, booster, predict_type, num_iteration)
        if fast is not None and X.shape[1] == fast.n_features:
            return fast(X)
    kind = {RAW_SCORE: {"raw_score": True}, CONTRIB: {"pred_contrib": True}, NORMAL: {}}[predict_type]
    out = booster.predict(X, num_iteration=num_iteration, num_threads=1, **kind)
    if isinstance(out, list):  # some versions return one contribution matrix per class
        out = np.stack(out, axis=1)
    return np.asarray(out).reshape(len(X), -1)

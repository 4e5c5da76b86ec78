"""Folding: group the units (columns) that every row treats alike, so work is done once per class."""

from __future__ import annotations

import numpy as np


def column_classes(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group equal columns of a boolean matrix: (class of each column, a representative column per class)."""
    width = rows.shape[1]
    if rows.shape[0] == 0 or width == 0:
        return np.zeros(width, np.intp), np.zeros(min(width, 1), np.intp)
    packed = np.ascontiguousarray(np.packbits(rows, axis=0).T)
    keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, reps, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return inverse.ravel().astype(np.intp), reps.astype(np.intp)


def int_classes(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group equal integers: (class of each, a representative position per class)."""
    _, reps, inverse = np.unique(key, return_index=True, return_inverse=True)
    return inverse.ravel().astype(np.intp), reps.astype(np.intp)


def joint_classes(*classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Classes of units that agree on every given class array: (class of each unit, a rep per class)."""
    rows = np.ascontiguousarray(np.stack([c.astype(np.int64) for c in classes], axis=1))
    keys = rows.view(np.dtype((np.void, rows.shape[1] * 8))).ravel()
    _, reps, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return inverse.ravel().astype(np.intp), reps.astype(np.intp)

"""Baseline predictors: global mean + user bias + item bias, fitted by ALS.

b_ui = mu + b_u + b_i, each bias a regularised mean of the residuals of the other
(Koren 2010, section 2.1). A few alternating sweeps are enough: every sweep is two
``bincount`` calls over the ratings, so fitting costs O(ratings).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._sparse import row_ids


@dataclass(frozen=True)
class Baselines:
    """Fitted baseline: ``predict(u, i) = mu + user_bias[u] + item_bias[i]``."""

    mu: float
    user_bias: np.ndarray
    item_bias: np.ndarray

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Baseline for (user, item) pairs; unknown indices (-1 or out of range) get bias 0."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        bu = _take(self.user_bias, users)
        bi = _take(self.item_bias, items)
        return self.mu + bu + bi

    def of_entries(self, R: sp.csr_matrix) -> np.ndarray:
        """Baseline value of every stored entry of ``R`` (in CSR data order)."""
        return self.mu + self.user_bias[row_ids(R)] + self.item_bias[R.indices]


def _take(arr: np.ndarray, idx: np.ndarray) -> np.ndarray:
    ok = (idx >= 0) & (idx < arr.size)
    return np.where(ok, arr[np.where(ok, idx, 0)], 0.0)


def fit_baselines(
    R: sp.csr_matrix, reg_user: float = 15.0, reg_item: float = 10.0, n_epochs: int = 10
) -> Baselines:
    """Fit mu, b_u, b_i by alternating regularised least squares on the stored ratings.

    Defaults are Surprise's ``baseline_options`` defaults, which also measured best on
    MovieLens latest-small for the neighbourhood models here.
    """
    n_users, n_items = R.shape
    if R.nnz == 0:
        return Baselines(0.0, np.zeros(n_users), np.zeros(n_items))
    users = row_ids(R)
    items = R.indices
    r = R.data
    mu = float(r.mean())
    n_u = np.bincount(users, minlength=n_users)
    n_i = np.bincount(items, minlength=n_items)
    # sum_u (r_ui - mu - b_u) = sum_u (r_ui - mu) - (B^T b_u)_i with B the binary pattern:
    # two sparse mat-vecs per sweep instead of gathers over every rating
    item_res = np.bincount(items, r - mu, minlength=n_items)
    user_res = np.bincount(users, r - mu, minlength=n_users)
    B = sp.csr_matrix((np.ones(R.nnz), R.indices, R.indptr), shape=R.shape)
    bu = np.zeros(n_users)
    bi = np.zeros(n_items)
    for _ in range(int(n_epochs)):
        bi = (item_res - B.T @ bu) / (reg_item + n_i)
        bu = (user_res - B @ bi) / (reg_user + n_u)
    return Baselines(mu, bu, bi)

"""Calibration keeps the honest-OOF discipline (docs/honest-oof.md rule 4, docs/calibration.md): the
temperature that scales a fold's OOF rows is fit without them, so a calibrated model's published OOF
(which ranks the champion and feeds every combiner) cannot have seen its own labels.

Companion of ``test_leakage.py`` (the ensemble tasks on a noise pool), for ``service_tasks.calibration``.
"""

from __future__ import annotations

import numpy as np
import pytest
from obsrv.service_tasks import calibration as C
from obsrv.service_tasks import metrics


def _alternating_pool(n_per_fold: int = 300, n_folds: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A target-leaking setup: OOF 97 % sure everywhere, right on every row of the even folds and wrong
    on every row of the odd ones. Only a fold's own labels say which kind it is, so a temperature fit on
    the fold itself (sharpen the right folds, flatten the wrong ones) scores far below chance, while any
    honest calibration from the other folds (half right, half wrong) can do no better than chance."""
    rng = np.random.default_rng(3)
    folds = np.repeat(np.arange(n_folds), n_per_fold)
    y = rng.integers(0, 2, len(folds)).astype(np.int64)
    guess = np.where(folds % 2 == 0, y, 1 - y)
    oof = np.where(np.eye(2)[guess] == 1, 0.97, 0.03)
    return oof, y, folds


def _in_fold_scaled(oof: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """The leak this test guards against: each fold scaled by a T fit on its own rows."""
    out = oof.copy()
    for f in np.unique(folds):
        rows = folds == f
        out[rows] = C.apply_temperature(oof[rows], C.fit_temperature(oof[rows], y[rows]))
    return out


def test_nested_calibration_shows_no_impossible_oof_logloss() -> None:
    oof, y, folds = _alternating_pool()
    chance = float(np.log(2))
    leaky = metrics.score("logloss", y, _in_fold_scaled(oof, y, folds), problem="classification")
    assert leaky < 0.75 * chance  # the setup can expose a leak: in-fold scaling looks impossibly good
    honest = metrics.score("logloss", y, C.nested_scaled_oof(oof, y, folds), problem="classification")
    assert honest >= chance - 0.01


def test_a_folds_calibrated_oof_ignores_that_folds_labels() -> None:
    """Rewrite one fold's labels at a time: that fold's published OOF rows stay bit-identical (its T
    depends on the other folds only) while at least one other fold's rows move."""
    rng = np.random.default_rng(8)
    n, k = 1200, 3
    folds = np.arange(n) % 4
    oof = rng.dirichlet(np.full(k, 0.3), size=n)  # sharp, so T moves well away from 1
    y = np.where(rng.uniform(size=n) < 0.6, oof.argmax(axis=1), rng.integers(0, k, n)).astype(np.int64)
    base = C.nested_scaled_oof(oof, y, folds)
    for f in range(4):
        rows = folds == f
        y2 = y.copy()
        y2[rows] = (y2[rows] + 1) % k  # every label of fold f wrong
        moved = C.nested_scaled_oof(oof, y2, folds)
        np.testing.assert_array_equal(moved[rows], base[rows])
        assert not np.allclose(moved[~rows], base[~rows])


@pytest.mark.parametrize("weights", [None, "random"])
def test_nested_temperatures_use_other_folds_only(weights: str | None) -> None:
    rng = np.random.default_rng(4)
    n = 900
    folds = np.arange(n) % 3
    oof = rng.dirichlet(np.ones(4) * 0.5, size=n)
    y = rng.integers(0, 4, n).astype(np.int64)
    w = rng.uniform(0.5, 2.0, n) if weights else None
    temps = C.nested_temperatures(oof, y, folds, w)
    for f, t in temps.items():
        rest = folds != f
        assert t == C.fit_temperature(oof[rest], y[rest], None if w is None else w[rest])

"""`context._aligned`: a model's rows of a predictions table come back in prepare's row order, and a
table that does not cover exactly those rows, or that used another fold plan, is refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from obsrv.service_tasks.context import _aligned
from obsrv.service_tasks.errors import TaskError

COLS = ["probability_a b", "probability_C.d"]  # users' class labels keep their spaces and dots


def _table(row_ids: np.ndarray, folds: np.ndarray, model: str = "m") -> pd.DataFrame:
    preds = np.column_stack([row_ids * 0.001, 1 - row_ids * 0.001])
    other = pd.DataFrame({"model": "other", "row_id": row_ids, "fold": folds, COLS[0]: 9.0, COLS[1]: 9.0})
    mine = pd.DataFrame({"model": model, "row_id": row_ids, "fold": folds, COLS[0]: preds[:, 0], COLS[1]: preds[:, 1]})
    return pd.concat([other, mine], ignore_index=True)


def test_rows_come_back_in_prepares_order_whatever_the_tables_order() -> None:
    rng = np.random.default_rng(0)
    row_ids = rng.permutation(np.arange(100, 600))  # prepare's (shuffled) order
    folds = np.arange(len(row_ids)) % 5
    for order in (np.arange(len(row_ids)), rng.permutation(len(row_ids))):  # as written, then shuffled
        got = _aligned(_table(row_ids[order], folds[order]), "m", row_ids, COLS, folds, "t")
        np.testing.assert_array_equal(got[:, 0], row_ids * 0.001)
        np.testing.assert_array_equal(got[:, 1], 1 - row_ids * 0.001)


@pytest.mark.parametrize("case", ["missing", "duplicated", "extra", "absent model"])
def test_a_table_that_does_not_cover_the_prepared_rows_is_refused(case: str) -> None:
    row_ids = np.arange(50)
    folds = row_ids % 5
    written = {"missing": row_ids[1:], "duplicated": np.r_[row_ids[1:], 7], "extra": np.r_[row_ids, 99],
               "absent model": row_ids}[case]
    table = _table(written, written % 5, model="n" if case == "absent model" else "m")
    with pytest.raises(TaskError, match=r"do not cover the prepared rows \((\d+) missing\)") as err:
        _aligned(table, "m", row_ids, COLS, folds, "base_x")
    expected_missing = {"missing": 1, "duplicated": 1, "extra": 0, "absent model": 50}[case]
    assert f"({expected_missing} missing)" in str(err.value)


def test_another_fold_plan_is_refused_but_holdout_rows_need_none() -> None:
    row_ids = np.arange(40)
    table = _table(row_ids, (row_ids + 1) % 5)
    with pytest.raises(TaskError, match="different fold plan"):
        _aligned(table, "m", row_ids, COLS, row_ids % 5, "base_x")
    assert _aligned(table, "m", row_ids, COLS, None, "base_x").shape == (40, 2)

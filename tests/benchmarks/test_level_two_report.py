"""benchmarks/level_two.py's report: losses as code_ab.py counts them (1 - AUC, log-loss, RMSE), so a
better AUC and a lower log-loss both count as a gain over greedy selection."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture()
def level_two():
    sys.path.insert(0, str(BENCH))
    import level_two as L

    return L


def _row(metric: str, greedy: float, used: dict[str, tuple[str, float]]) -> dict:
    out = {"metric": metric, "best_single": greedy, "greedy": greedy, "members": []}
    for variant in ("linear", "lightgbm_full", "lightgbm_full+passthrough"):
        kept, test = used.get(variant, ("greedy", greedy))
        out[variant] = {"used": kept, "test": test, "stack_test": test, "nested_stack": 0.0,
                        "nested_greedy": 0.0, "seconds": 1.0}
    return out


def test_the_summary_counts_gains_as_loss_reductions(level_two) -> None:
    rows = [("a r0f0", _row("auc", 0.80, {"lightgbm_full+passthrough": ("stack", 0.82)})),  # loss 0.20 -> 0.18
            ("b r0f0", _row("logloss", 0.40, {"lightgbm_full+passthrough": ("stack", 0.38)}))]  # 0.40 -> 0.38
    args = argparse.Namespace(work_dir="W", out="O")
    text = level_two.render(rows, args, 60.0)
    line = next(ln for ln in text.splitlines() if ln.startswith("- `lightgbm_full+passthrough`"))
    assert "+7.50 %" in line and "better on 2 of 2" in line and "kept the stack on 2" in line  # (10 % + 5 %) / 2
    assert "+0.00 %" in next(ln for ln in text.splitlines() if ln.startswith("- `linear`"))
    assert level_two._loss("auc", 0.8) == pytest.approx(0.2) and level_two._loss("rmse", 3.0) == 3.0

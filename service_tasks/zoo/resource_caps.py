"""Caps that keep a base family inside the machine on large tables.

Two families grow without bound with the rows: a fully grown forest stores about one leaf per
``min_samples_leaf`` training rows in every tree of every fold model, and a kNN model predicts each
row against all its training rows. At 1M rows the default forest fold bag would need tens of GB and
kNN would predict for hours. Like AutoGluon (which lowers ``n_estimators`` when a forest would not
fit in memory), obsrv caps what the estimate says cannot fit and says so in the task log and the
published config.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

FOREST_MEMORY_SHARE = 0.2
"""One forest fold bag may take this share of the task's memory (by an upper-bound estimate; the
search keeps the best two bags while it builds a third, and the real size is ~half the bound)."""
MIN_FOREST_TREES = 8
KNN_MAX_FIT_ROWS = 50_000
"""kNN fold models fit on a seeded sample of at most this many rows: prediction cost grows with the
training rows (1M rows x 5 folds would take hours on 2 cores) while accuracy saturates long before."""
_NODE_BYTES = 64  # sklearn's tree Node struct; the value array adds 8 bytes per output and class


def memory_limit_bytes() -> int:
    """The memory this process may use: physical memory, or a smaller cgroup limit (containers,
    Databricks serverless)."""
    limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            limit = min(limit, int(text))
    return limit


def forest_tree_bytes(params: dict[str, Any], n_train: int, n_values: int, *, bootstrap_default: bool) -> float:
    """Upper bound on one tree's size: leaves <= distinct training rows / min_samples_leaf (and
    <= 2**max_depth), nodes = 2 * leaves - 1, each node a Node struct plus its value array.
    ``n_values`` = classes (classification) or 1 (regression)."""
    min_leaf = params.get("min_samples_leaf", 1)
    if isinstance(min_leaf, float) and min_leaf < 1:  # sklearn's fraction form
        min_leaf = max(1.0, min_leaf * n_train)
    rows = n_train * (0.632 if params.get("bootstrap", bootstrap_default) else 1.0)  # distinct rows drawn
    leaves = max(rows / max(float(min_leaf), 1.0), 1.0)
    depth = params.get("max_depth")
    if depth is not None:
        leaves = min(leaves, 2.0 ** int(depth))
    return (2 * leaves - 1) * (_NODE_BYTES + 8 * n_values)


def cap_forest_trees(
    family: str,
    params: dict[str, Any],
    *,
    n_train: int,
    n_values: int,
    n_folds: int,
    limit_bytes: int | None = None,
) -> tuple[dict[str, Any], str | None]:
    """``params`` with ``n_estimators`` lowered so the estimated fold bag fits its memory share;
    the note says what changed and why (None when nothing did)."""
    if family not in ("random_forest", "extra_trees"):
        return params, None
    limit = memory_limit_bytes() if limit_bytes is None else limit_bytes
    per_tree = forest_tree_bytes(params, n_train, n_values, bootstrap_default=family == "random_forest")
    wanted = int(params.get("n_estimators", 100))
    fits = max(MIN_FOREST_TREES, math.floor(FOREST_MEMORY_SHARE * limit / (n_folds * per_tree)))
    if wanted <= fits:
        return params, None
    note = (f"{family}: n_estimators {wanted} -> {fits}: {n_folds} fold models x {wanted} trees on "
            f"{n_train:,} rows would take up to {n_folds * wanted * per_tree / 2**30:.1f} GiB; the limit is "
            f"{FOREST_MEMORY_SHARE:.0%} of {limit / 2**30:.1f} GiB")
    return {**params, "n_estimators": fits}, note

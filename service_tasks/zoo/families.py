"""The zoo's families and problems: which families exist and which have a GPU mode."""

from __future__ import annotations

from typing import Literal

Problem = Literal["classification", "regression"]
FAMILIES = ("linear", "random_forest", "extra_trees", "hist_gbm", "xgboost", "lightgbm", "catboost", "knn")
GPU_CAPABLE = ("xgboost", "lightgbm", "catboost")

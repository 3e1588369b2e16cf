"""The base-model zoo: eight families, each with its own preprocessing, a search under a time budget
(the default config, AutoGluon's zero-shot portfolio in order, then seeded random configs:
``spaces.config_sequence``), and K-fold training on the ONE shared fold plan.

Out-of-fold (OOF) predictions: every training row is predicted by the fold model that did not see
it. Holdout predictions: the average of the K fold models (k-fold bagging, as AutoGluon); there is
no refit on all rows, so the OOF and holdout predictions come from the same models that serve.

Preprocessing is part of each fold model and fitted on that fold's training rows only:

=============  ======================================================================
family         preprocessing
=============  ======================================================================
linear, knn    median impute (+ missing indicators), standardise; one-hot categoricals
random_forest  NaN kept (native support), ordinal-encoded categoricals
extra_trees    same as random_forest
hist_gbm       NaN kept, native categorical support on ordinal codes
xgboost        NaN kept, native categoricals (pandas category, levels fixed per fold)
lightgbm       same as xgboost
catboost       NaN kept, native categoricals (strings, `__missing__`)
=============  ======================================================================

The gradient-boosting families (hist_gbm internally; xgboost, lightgbm and catboost on a seeded
10% inner split of each fold's training rows) use early stopping, so the number of trees is
learned, never taken from the OOF fold.

Budgets (``time_limits``): the base tasks and ``boost`` search with ``time_bound``, so every config,
the default one included, trains within the task's budget: each fold model gets an even share of
the time left, and boosters, hist_gbm and forests stop adding rounds, iterations or trees when it
is spent (never fewer than 10); xgboost, lightgbm and hist_gbm fits the limit would cut short also
raise their learning rate after their first 10 rounds (``time_limits.paced_learning_rate``), and a
CatBoost fold model starts at the rate that the last measured pace of a like fit affords (every
fold model but a search's first; ``time_limits.Pace``). kNN and
linear fits (and CatBoost on a GPU) have no such hook and run to the end. With ``OBSRV_MAX_TRIALS``
set (reproducible runs) nothing depends on the clock: no time bound.

Large tables (``resource_caps``): a forest config's ``n_estimators`` is lowered when the estimated
fold bag would exceed its memory share, and kNN fold models fit on a seeded sample of at most
50,000 rows; both are logged, and the forest cap shows in the published config.

`fit_family` is the public entry point the ensemble tasks reuse (per-route models, boost).
"""

# The package is a thin facade: the code lives in its modules by role, and `zoo.X` keeps working.
from obsrv.service_tasks.zoo.devices import (
    available_cores,
    cuda_device_count,
    cuda_present,
    default_device,
    lightgbm_gpu_platform,
    lightgbm_gpu_supported,
    opencl_gpu_platform,
    resolve_devices,
    threads_for,
)
from obsrv.service_tasks.zoo.families import FAMILIES, GPU_CAPABLE, Problem
from obsrv.service_tasks.zoo.fold_models import MISSING, FamilyModel, FoldBag, fit_time_limit, last_pace
from obsrv.service_tasks.zoo.search import (
    FIT_SHARE_PREDICT,
    FamilyFit,
    FitRequest,
    _split_columns,
    cross_fit,
    fit_family,
    search_family,
)
from obsrv.service_tasks.zoo.spaces import config_sequence, default_params, sample_params

__all__ = [
    "FAMILIES",
    "FIT_SHARE_PREDICT",
    "GPU_CAPABLE",
    "MISSING",
    "FamilyFit",
    "FamilyModel",
    "FitRequest",
    "FoldBag",
    "Problem",
    "_split_columns",
    "available_cores",
    "config_sequence",
    "cross_fit",
    "cuda_device_count",
    "cuda_present",
    "default_device",
    "default_params",
    "fit_family",
    "fit_time_limit",
    "last_pace",
    "lightgbm_gpu_platform",
    "lightgbm_gpu_supported",
    "opencl_gpu_platform",
    "resolve_devices",
    "sample_params",
    "search_family",
    "threads_for",
]

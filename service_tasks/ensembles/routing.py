"""Routing: a router splits rows into routes, each big-enough route gets its own model.

Why every piece is fit per fold: a clusterer or segment statistic fit on all rows would let the
held fold shape its own routes (pitfall 3 in the reference notes). So for each shared fold f the
router, the per-route models and the global model are fit on the other folds only and predict fold
f; the holdout and serving predictions average those K fold bundles (bagging, as the base models).

Why a global model and a blend: small routes over-fit, so routes with fewer than ``min_size``
training rows (and unseen route values) use the global model; and the final prediction blends
routed and global predictions with a weight learned on OOF, so routing can only lose to the global
model by the noise of one scalar chosen on other folds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
import pandas as pd
from obsrv.service_tasks.errors import TaskError
from obsrv.service_tasks.zoo.time_limits import Deadline
from obsrv.service_tasks.zoo import FIT_SHARE_PREDICT, served

from .base import FrameEncoder, LossFn, fold_ids, subset_w
from .learners import ZooLearner

GLOBAL_ROUTE = -1
BLEND_GRID = np.round(np.linspace(0.0, 1.0, 11), 2)


class Router:
    """Maps a raw feature frame to int route ids (``GLOBAL_ROUTE`` = use the global model)."""

    def fit(self, X: pd.DataFrame) -> "Router":
        raise NotImplementedError

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError


@dataclass
class ClusterRouter(Router):
    """kmeans, gmm or agglomerative clustering of the numeric-encoded, standardised features.

    Agglomerative clustering has no ``predict``: it is fit on at most ``max_fit_rows`` rows
    (it is O(n^2) in memory) and new rows go to the nearest cluster centroid.
    """

    method: Literal["kmeans", "agglomerative", "gmm"]
    n_clusters: int = 3
    categorical_columns: list[str] = field(default_factory=list)
    seed: int = 42
    max_fit_rows: int = 3000
    encoder_: FrameEncoder | None = field(default=None, init=False)
    model_: Any = field(default=None, init=False)
    centroids_: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), init=False)

    def fit(self, X: pd.DataFrame) -> "ClusterRouter":
        self.encoder_ = FrameEncoder(self.categorical_columns, scale=True)
        Z = self.encoder_.fit_transform(X)
        k = min(self.n_clusters, len(X))
        if self.method == "kmeans":
            from sklearn.cluster import KMeans

            self.model_ = KMeans(n_clusters=k, n_init=4, random_state=self.seed).fit(Z)
        elif self.method == "gmm":
            from sklearn.mixture import GaussianMixture

            self.model_ = GaussianMixture(n_components=k, covariance_type="diag", reg_covar=1e-4,
                                          random_state=self.seed).fit(Z)
        elif self.method == "agglomerative":
            from sklearn.cluster import AgglomerativeClustering

            rng = np.random.default_rng(self.seed)
            idx = rng.choice(len(Z), size=min(len(Z), self.max_fit_rows), replace=False)
            labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(Z[idx])
            self.centroids_ = np.vstack([Z[idx][labels == c].mean(axis=0) for c in range(k)])
        else:
            raise ValueError(f"unknown clustering method {self.method!r}; expected kmeans, agglomerative or gmm")
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        assert self.encoder_ is not None, "fit the router first"
        Z = self.encoder_.transform(X)
        if self.method == "agglomerative":
            d = ((Z[:, None, :] - self.centroids_[None, :, :]) ** 2).sum(axis=2)
            return np.argmin(d, axis=1).astype(np.int64)
        return np.asarray(self.model_.predict(Z), dtype=np.int64)


def _key(v: object) -> str | None:
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return None
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))  # 3.0 (an int column that met a NaN) joins 3
    if isinstance(v, (np.integer, np.floating, np.bool_)):
        return str(v.item())
    return str(v)


def _keys(values: pd.Series) -> list[str | None]:
    """Route keys as strings, so that 1, 1.0 and "1" from different tables agree; NaN -> None."""
    return [_key(v) for v in values.tolist()]


@dataclass
class FeatureRouter(Router):
    """Routes by the value of one column; values not seen in training (and NaN) -> global."""

    column: str
    levels_: list[str] = field(default_factory=list, init=False)

    def fit(self, X: pd.DataFrame) -> "FeatureRouter":
        if self.column not in X:
            raise ValueError(f"route column {self.column!r} is not a feature column")
        self.levels_ = sorted({k for k in _keys(X[self.column]) if k is not None})
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        if self.column not in X:
            return np.full(len(X), GLOBAL_ROUTE, dtype=np.int64)
        lookup: dict[str | None, int] = {v: i for i, v in enumerate(self.levels_)}
        return np.array([lookup.get(k, GLOBAL_ROUTE) for k in _keys(X[self.column])], dtype=np.int64)


@dataclass
class ExternalRouter(Router):
    """Routes from an external table ``key -> column``, joined on ``key``.

    Rows whose key is missing from the table, or whose route value is NULL or unseen in training,
    go to the global model. Duplicate keys in the table keep their first row (documented, not an
    error: routing tables are often slowly-changing dimensions).
    """

    key: str
    mapping: dict[str, str]
    levels_: list[str] = field(default_factory=list, init=False)

    @classmethod
    def from_table(cls, table: pd.DataFrame, key: str, column: str, table_name: str = "the routing table"
                   ) -> "ExternalRouter":
        from obsrv.service_tasks.columns import find_column

        # spec names match the table's columns ignoring case, as Spark does (`columns`)
        key = find_column(map(str, table.columns), key, "route.external.key") or key
        column = find_column(map(str, table.columns), column, "route.external.column") or column
        for c, field_name in ((key, "route.external.key"), (column, "route.external.column")):
            if c not in table:
                raise TaskError(f"The routing table {table_name} has no column {c!r} ({field_name}); it has "
                                f"{', '.join(map(str, table.columns))}. Set {field_name} to one of them, or "
                                "point route.external.table at a table that has it.")
        t = table[[key, column]].dropna()
        t = t.drop_duplicates(subset=[key], keep="first")
        return cls(key, dict(zip(_keys(t[key]), _keys(t[column]))))  # type: ignore[arg-type]  # dropna(): no None

    def _route_values(self, X: pd.DataFrame) -> list[str | None]:
        if self.key not in X:
            return [None] * len(X)
        return [self.mapping.get(k) if k is not None else None for k in _keys(X[self.key])]

    def fit(self, X: pd.DataFrame) -> "ExternalRouter":
        self.levels_ = sorted({v for v in self._route_values(X) if v is not None})
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        lookup: dict[str | None, int] = {v: i for i, v in enumerate(self.levels_)}
        return np.array([lookup.get(v, GLOBAL_ROUTE) if v is not None else GLOBAL_ROUTE
                         for v in self._route_values(X)], dtype=np.int64)


@dataclass
class RoutedModel:
    """One fitted bundle: router + global model + per-route models (routes below ``min_size`` have
    none and use the global model)."""

    router: Router
    global_model: ZooLearner
    route_models: dict[int, ZooLearner]
    learner_columns: list[str] | None = None  # None: learners see every column the router sees

    def _lx(self, X: pd.DataFrame) -> pd.DataFrame:
        return X if self.learner_columns is None else X[self.learner_columns]

    def routes(self, X: pd.DataFrame) -> np.ndarray:
        r = self.router.predict(X)
        return np.where(np.isin(r, list(self.route_models)), r, GLOBAL_ROUTE)

    def predict_both(self, X: pd.DataFrame, inputs: served.Inputs | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(routed, global) predictions, each (n, K). ``inputs``: the call's converted columns of
        ``X`` (``served.Inputs``), shared with the global models of the other bundles."""
        r = self.routes(X)
        X = self._lx(X)
        g = served.predict_shared(self.global_model, served.Inputs(X) if inputs is None else inputs)
        routed = g.copy()
        for route, model in self.route_models.items():
            rows = r == route
            if rows.any():
                routed[rows] = model.predict_matrix(X.loc[rows])
        return routed, g


def fit_routed(
    X: pd.DataFrame,
    y: np.ndarray,
    w: np.ndarray | None,
    router: Router,
    make_learner: Callable[[], ZooLearner],
    min_size: int,
    learner_columns: list[str] | None = None,
    deadline: Deadline | None = None,
) -> RoutedModel:
    """Fit router, global model and one model per route with at least ``min_size`` rows.

    ``deadline``: when this bundle must be fit and have predicted; its model fits share the time
    left evenly, keeping a share for predicting (families without a time hook run to the end)."""
    router.fit(X)
    r = router.predict(X)
    LX = X if learner_columns is None else X[learner_columns]
    routes = [route for route in sorted(set(int(v) for v in r if v != GLOBAL_ROUTE)) if (r == route).sum() >= min_size]
    fits_left = 1 + len(routes)

    def learner() -> ZooLearner:
        nonlocal fits_left
        model = make_learner()
        if deadline is not None:
            model.time_limit_s = deadline.share(fits_left) * (1.0 - FIT_SHARE_PREDICT)
        fits_left -= 1
        return model

    global_model = learner().fit(LX, y, w)
    models: dict[int, ZooLearner] = {}
    for route in routes:
        rows = r == route
        models[route] = learner().fit(LX.loc[rows], y[rows], subset_w(w, rows))
    return RoutedModel(router, global_model, models, learner_columns)


@dataclass
class RoutingResult:
    """OOF/holdout predictions of the routed and global models, plus the K fold bundles."""

    oof_routed: np.ndarray
    oof_global: np.ndarray
    holdout_routed: np.ndarray
    holdout_global: np.ndarray
    bundles: list[RoutedModel]
    oof_routes: np.ndarray  # route id each train row got from its fold's router (-1 = global)
    n_routed_per_fold: list[int]


def routed_cv(
    X: pd.DataFrame,
    y: np.ndarray,
    folds: np.ndarray,
    make_router: Callable[[], Router],
    make_learner: Callable[[], ZooLearner],
    min_size: int,
    *,
    w: np.ndarray | None = None,
    X_holdout: pd.DataFrame | None = None,
    learner_columns: list[str] | None = None,
    deadline: Deadline | None = None,
) -> RoutingResult:
    """Routed and global models on the shared folds (everything fit on the other folds only).

    ``deadline``: the folds share the time left evenly (``fit_routed``)."""
    X = X.reset_index(drop=True)
    bundles: list[RoutedModel] = []
    oof_r = oof_g = None
    hold_r = hold_g = None
    routes = np.full(len(X), GLOBAL_ROUTE, dtype=np.int64)
    n_routed = []
    ids = fold_ids(folds)
    for j, f in enumerate(ids):
        held = folds == f
        train = ~held
        b = fit_routed(X.loc[train], y[train], subset_w(w, train), make_router(), make_learner, min_size,
                       learner_columns, None if deadline is None else deadline.split(len(ids) - j))
        r, g = b.predict_both(X.loc[held])
        if oof_r is None:
            oof_r, oof_g = np.full((len(X), r.shape[1]), np.nan), np.full((len(X), r.shape[1]), np.nan)
        assert oof_r is not None and oof_g is not None  # set on the first fold
        oof_r[held], oof_g[held] = r, g
        routes[held] = b.routes(X.loc[held])
        n_routed.append(len(b.route_models))
        if X_holdout is not None and len(X_holdout):
            hr, hg = b.predict_both(X_holdout.reset_index(drop=True))
            hold_r = hr if hold_r is None else hold_r + hr
            hold_g = hg if hold_g is None else hold_g + hg
        bundles.append(b)
    assert oof_r is not None and oof_g is not None
    k = len(bundles)
    empty = np.zeros((0, oof_r.shape[1]))
    return RoutingResult(
        oof_r, oof_g,
        hold_r / k if hold_r is not None else empty,
        hold_g / k if hold_g is not None else empty,
        bundles, routes, n_routed,
    )


def best_blend_weight(routed: np.ndarray, glob: np.ndarray, y: np.ndarray, loss: LossFn,
                      w: np.ndarray | None = None) -> float:
    """The weight a in ``a * routed + (1 - a) * global`` on an 11-point grid minimising ``loss``.
    Ties go to the smaller weight (more global: the safer model)."""
    losses = [loss(y, a * routed + (1 - a) * glob, w) for a in BLEND_GRID]
    return float(BLEND_GRID[int(np.argmin(losses))])


def nested_blend(
    routed: np.ndarray, glob: np.ndarray, y: np.ndarray, folds: np.ndarray, loss: LossFn,
    w: np.ndarray | None = None,
) -> tuple[float, np.ndarray, list[float]]:
    """Blend weight learned on OOF, with an honest OOF of the blend.

    For each held fold the weight is chosen on the other folds' OOF rows and applied to the held
    fold (nested); the weight for holdout/serving is chosen on all OOF rows.
    Returns (weight on all rows, nested OOF of the blend, weight chosen per fold).
    """
    out = np.full_like(routed, np.nan)
    per_fold = []
    for f in fold_ids(folds):
        held = folds == f
        a = best_blend_weight(routed[~held], glob[~held], y[~held], loss, subset_w(w, ~held))
        out[held] = a * routed[held] + (1 - a) * glob[held]
        per_fold.append(a)
    return best_blend_weight(routed, glob, y, loss, w), out, per_fold


@dataclass
class RoutedPredictor:
    """Servable routing model over the K fold bundles (predictions averaged over the bundles).

    ``alpha = 1``: routed predictions. Otherwise ``alpha * routed + (1 - alpha) * global``, where
    the global part is ``partner`` when given (e.g. the strongest model of the candidate pool, a
    fitted predictor over raw frames) and else the bundles' own global models. Picklable.
    """

    bundles: list[RoutedModel]
    alpha: float = 1.0
    partner: Any = None
    extra_input_columns: list[str] = field(default_factory=list)
    """Non-feature columns the router reads (route_external on the source's id column): the served
    model passes them to ``predict_matrix`` and lists them in its signature."""

    def predict_matrix(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_inputs(served.Inputs(X))

    def predict_inputs(self, inputs: served.Inputs) -> np.ndarray:
        """From one call's converted inputs (``served.Inputs``), shared by the bundles' global
        models and the partner; the per-route models convert their own rows."""
        X = inputs.X.reset_index(drop=True)
        routed = glob = None
        for b in self.bundles:
            r, g = b.predict_both(X, inputs)
            routed = r if routed is None else routed + r
            glob = g if glob is None else glob + g
        assert routed is not None and glob is not None
        routed, glob = routed / len(self.bundles), glob / len(self.bundles)
        if self.alpha >= 1.0:
            return routed
        other = glob if self.partner is None else served.predict_shared(self.partner, inputs)
        return self.alpha * routed + (1 - self.alpha) * other

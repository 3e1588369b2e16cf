"""Stacking meta-learners and the dynamic-stacking guard.

Why these learners: a meta-learner sees M highly correlated columns fit on OOF predictions, so it
must be low-capacity. The default follows H2O's StackedEnsemble metalearner: a GLM with
non-negative member coefficients, on logits (AutoGluon/H2O practice: averaging logits is better
calibrated than averaging probabilities). Non-negativity forbids the "subtract a model" solutions
that win on OOF and lose on test. The `lightgbm` alternative is shallow and heavily regularised.

Why the guard: stacking over-fits on roughly a quarter of datasets (AutoGluon's dynamic stacking).
We therefore score the stack and greedy selection over the same members, both *nested* on the
shared folds, and then let greedy selection weight the two nested OOFs against each other, as
AutoGluon's last `WeightedEnsemble` weights its stack models: the stack alone, greedy selection
alone, or a mix of both, whichever the nested OOF favours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
from scipy.optimize import lsq_linear, minimize
from scipy.special import log_softmax

from obsrv.compiler.spec import META_LEARNERS, MetaLearner

from .base import (
    Combiner,
    FrameEncoder,
    LossFn,
    Problem,
    check_stack,
    clip_proba,
    member_features,
    nested_oof,
    normalise_rows,
)
from .greedy import GreedySelection, selection_rows
from .level_two import FullStacker

MetaLearnerName = MetaLearner  # the spec's meta_learner values

FIT_ROWS = 100_000
"""Above this many rows the linear meta-learner fits on a seeded, stratified subsample of this many
(``greedy.selection_rows``). It has one weight per member plus K intercepts (and the passthrough
coefficients), few parameters for that many rows, while each L-BFGS evaluation costs time in
proportion to the rows. Chosen from ``benchmarks/stack_subsample.py`` (synthetic data outside the
quality benchmark's sets; ``benchmarks/results/stack_subsample.md``): fit on 100,000 of 150,000
rows, the stack's test log-loss stayed within 0.00023 of the fit on every row for every seed, and
no member weight moved by more than 0.021.
Inside ``nested_oof`` each fit draws from its own training folds only, so the nested OOF stays
honest."""


@dataclass
class LinearStacker:
    """Non-negative, L2-regularised GLM over member predictions.

    Classification (binary and multiclass, one code path): a multinomial logistic model on the
    members' log-probabilities, ``eta_c = b_c + sum_m w_m log p_mc (+ extra @ V[:, c])``, with one
    weight ``w_m >= 0`` per member shared by all classes. For two classes ``eta_1 - eta_0`` is
    ``b + sum_m w_m logit(p_m1)``: exactly logistic regression on the member logits. Fit by L-BFGS-B
    (bounds give the non-negativity) on the sample-weighted mean log-loss + ``l2/2 * |w|^2``.

    Regression: ridge with non-negative member coefficients (``scipy.optimize.lsq_linear`` with
    bounds on the ridge-augmented system), on standardised target units so ``l2`` is scale-free.

    ``extra`` (passthrough features, already numeric and standardised) get sign-free, L2-penalised
    coefficients: a skip connection as in AutoGluon's L2 layer.

    Parameters
    ----------
    problem : {"classification", "regression"}
    l2 : float, default 1e-3
        L2 penalty on member and passthrough coefficients (never on intercepts).
    max_rows : int or None, default ``FIT_ROWS``
        Fit on a seeded, stratified subsample of this many of the rows ``fit`` is given, when it is
        given more (None: always every row).
    seed : int, default 0
        Seed of that subsample.
    """

    problem: Problem
    l2: float = 1e-3
    max_rows: int | None = FIT_ROWS
    seed: int = 0
    coef_: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False)
    intercept_: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False)
    extra_coef_: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), init=False)
    y_mean_: float = field(default=0.0, init=False)
    y_std_: float = field(default=1.0, init=False)

    def fit(
        self, P: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, extra: np.ndarray | None = None
    ) -> "LinearStacker":
        P = check_stack(P, y)
        if self.max_rows is not None and P.shape[1] > self.max_rows:
            rows = selection_rows(y, self.max_rows, self.seed)
            P, y = P[:, rows], np.asarray(y)[rows]
            w = None if w is None else np.asarray(w)[rows]
            extra = None if extra is None else np.asarray(extra)[rows]
        if self.problem == "regression":
            return self._fit_ridge(P[:, :, 0], np.asarray(y, dtype=np.float64), w, extra)
        return self._fit_logistic(P, np.asarray(y, dtype=np.int64), w, extra)

    # -- classification
    def _fit_logistic(
        self, P: np.ndarray, y: np.ndarray, w: np.ndarray | None, extra: np.ndarray | None
    ) -> "LinearStacker":
        m, n, k = P.shape
        S = np.log(clip_proba(P))  # (M, n, K)
        E = np.zeros((n, 0)) if extra is None else np.asarray(extra, dtype=np.float64)
        d = E.shape[1]
        sw = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
        sw = sw / sw.sum()
        Y = np.zeros((n, k))
        Y[np.arange(n), y] = 1.0
        l2 = self.l2

        def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            return theta[:m], theta[m : m + k], theta[m + k :].reshape(d, k)

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            wm, b, V = unpack(theta)
            eta = np.tensordot(wm, S, axes=1) + b + E @ V
            logp = log_softmax(eta, axis=1)
            nll = -np.sum(sw * np.sum(Y * logp, axis=1))
            R = (np.exp(logp) - Y) * sw[:, None]  # d nll / d eta
            g_w = np.einsum("nk,mnk->m", R, S) + l2 * wm
            g_b = R.sum(axis=0)
            g_V = E.T @ R + l2 * V
            value = nll + 0.5 * l2 * (wm @ wm + np.sum(V * V))
            return value, np.concatenate([g_w, g_b, g_V.ravel()])

        # start from the plain average of member log-probabilities and the class priors
        prior = np.log(np.clip(Y.T @ sw, 1e-12, None))
        theta0 = np.concatenate([np.full(m, 1.0 / m), prior - prior.mean(), np.zeros(d * k)])
        bounds = [(0.0, None)] * m + [(None, None)] * (k + d * k)
        res = minimize(objective, theta0, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": 500})
        wm, b, V = unpack(res.x)
        self.coef_, self.intercept_, self.extra_coef_ = wm, b, V
        return self

    # -- regression
    def _fit_ridge(
        self, X: np.ndarray, y: np.ndarray, w: np.ndarray | None, extra: np.ndarray | None
    ) -> "LinearStacker":
        m, n = X.shape
        E = np.zeros((n, 0)) if extra is None else np.asarray(extra, dtype=np.float64)
        d = E.shape[1]
        sw = np.ones(n) if w is None else np.asarray(w, dtype=np.float64)
        sw = sw / sw.sum()
        mu = float(np.sum(sw * y))
        sd = float(np.sqrt(np.sum(sw * (y - mu) ** 2))) or 1.0
        self.y_mean_, self.y_std_ = mu, sd
        A = np.column_stack([((X - mu) / sd).T, E, np.ones(n)])
        r = np.sqrt(sw)
        ridge = np.sqrt(self.l2) * np.eye(m + d, m + d + 1)  # no penalty on the intercept column
        A_aug = np.vstack([A * r[:, None], ridge])
        b_aug = np.concatenate([(y - mu) / sd * r, np.zeros(m + d)])
        lb = np.concatenate([np.zeros(m), np.full(d + 1, -np.inf)])
        ub = np.full(m + d + 1, np.inf)
        sol = lsq_linear(A_aug, b_aug, bounds=(lb, ub), method="bvls")
        self.coef_ = sol.x[:m]
        self.extra_coef_ = sol.x[m : m + d].reshape(d, 1)
        self.intercept_ = sol.x[m + d :]
        return self

    def predict(self, P: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
        P = check_stack(P)
        n = P.shape[1]
        E = np.zeros((n, self.extra_coef_.shape[0])) if extra is None else np.asarray(extra, dtype=np.float64)
        if self.problem == "regression":
            Z = (P[:, :, 0].T - self.y_mean_) / self.y_std_
            z = Z @ self.coef_ + E @ self.extra_coef_[:, 0] + self.intercept_[0]
            return (self.y_mean_ + self.y_std_ * z)[:, None]
        S = np.log(clip_proba(P))
        eta = np.tensordot(self.coef_, S, axes=1) + self.intercept_ + E @ self.extra_coef_
        return np.exp(log_softmax(eta, axis=1))


@dataclass
class LightGBMStacker:
    """A shallow, heavily regularised LightGBM over member logits (+ passthrough features).

    Depth-2 trees, 4 leaves, 150 rounds at learning rate 0.03, large leaves, L2 10 and row/column
    subsampling: enough to learn a monotone-ish re-weighting and simple interactions with
    passthrough features, too little to memorise OOF noise. Single-threaded for determinism.
    """

    problem: Problem
    n_classes: int = 2
    seed: int = 42
    model_: Any = field(default=None, init=False)  # the fitted lightgbm model (untyped library)
    classes_: np.ndarray = field(default_factory=lambda: np.zeros(0), init=False)

    def _features(self, P: np.ndarray, extra: np.ndarray | None) -> np.ndarray:
        F = member_features(P, self.problem)
        return F if extra is None else np.hstack([F, np.asarray(extra, dtype=np.float64)])

    def fit(
        self, P: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, extra: np.ndarray | None = None
    ) -> "LightGBMStacker":
        import lightgbm as lgb

        P = check_stack(P, y)
        n = P.shape[1]
        params = dict(
            n_estimators=150, learning_rate=0.03, num_leaves=4, max_depth=2,
            min_child_samples=max(20, n // 50), reg_lambda=10.0, subsample=0.8, subsample_freq=1,
            colsample_bytree=0.8, random_state=self.seed, n_jobs=1, deterministic=True,
            force_row_wise=True, verbose=-1,
        )
        F = self._features(P, extra)
        if self.problem == "regression":
            self.model_ = lgb.LGBMRegressor(**params).fit(F, y, sample_weight=w)
        else:
            self.model_ = lgb.LGBMClassifier(**params).fit(F, y, sample_weight=w)
            self.classes_ = np.asarray(self.model_.classes_, dtype=np.int64)
        return self

    def predict(self, P: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
        P = check_stack(P)
        F = self._features(P, extra)
        if self.problem == "regression":
            return np.asarray(self.model_.predict(F), dtype=np.float64)[:, None]
        out = np.full((F.shape[0], self.n_classes), 1e-6)
        out[:, self.classes_] = self.model_.predict_proba(F)
        return normalise_rows(out)


@dataclass
class ClasswiseStacker:
    """One meta-learner per class on that class's probability columns, then renormalised.

    For class c the learner sees only the members' ``p_c`` columns (as a two-column binary stack
    ``[1 - p_c, p_c]``) and the target ``y == c``; the K one-vs-rest outputs are renormalised to sum
    to 1. For a binary problem it reduces to a single-class stack: one learner on the positive-class
    column, ``p_0 = 1 - p_1``. For regression there is no class axis: it is the plain stack.
    """

    problem: Problem
    make_learner: Callable[[], Combiner]
    learners_: list[Combiner] = field(default_factory=list, init=False)

    def fit(
        self, P: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, extra: np.ndarray | None = None
    ) -> "ClasswiseStacker":
        P = check_stack(P, y)
        if self.problem == "regression":
            self.learners_ = [self.make_learner().fit(P, y, w, extra)]
            return self
        k = P.shape[2]
        classes = [1] if k == 2 else list(range(k))
        self.learners_ = []
        for c in classes:
            pc = P[:, :, c]
            self.learners_.append(
                self.make_learner().fit(np.stack([1 - pc, pc], axis=2), (y == c).astype(np.int64), w, extra)
            )
        return self

    def predict(self, P: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
        P = check_stack(P)
        if self.problem == "regression":
            return self.learners_[0].predict(P, extra)
        k = P.shape[2]
        if k == 2:
            p1 = self.learners_[0].predict(np.stack([1 - P[:, :, 1], P[:, :, 1]], axis=2), extra)[:, 1]
            return np.column_stack([1 - p1, p1])
        out = np.column_stack([
            lrn.predict(np.stack([1 - P[:, :, c], P[:, :, c]], axis=2), extra)[:, 1]
            for c, lrn in enumerate(self.learners_)
        ])
        return normalise_rows(out)


@dataclass(frozen=True)
class MetaFactory:
    """A picklable factory of fresh meta-learners by spec name (``linear``, ``lightgbm`` or
    ``lightgbm_full``); ``classwise`` wraps any of them in a ClasswiseStacker."""

    name: MetaLearnerName
    problem: Problem
    n_classes: int
    seed: int = 42
    classwise: bool = False

    def __post_init__(self) -> None:
        if self.name not in META_LEARNERS:
            raise ValueError(f"unknown meta_learner {self.name!r}; expected one of {', '.join(META_LEARNERS)}")

    def __call__(self) -> Combiner:
        if self.classwise:
            inner = MetaFactory(self.name, self.problem, 2 if self.problem == "classification" else 1, self.seed)
            return ClasswiseStacker(self.problem, inner)
        if self.name == "linear":
            return LinearStacker(self.problem)
        if self.name == "lightgbm_full":
            return FullStacker(self.problem, max(self.n_classes, 1), self.seed)
        return LightGBMStacker(self.problem, n_classes=max(self.n_classes, 1), seed=self.seed)


@dataclass
class PassthroughCombiner:
    """A meta-learner that also sees the original features (``passthrough: true``).

    Its ``extra`` input is the raw feature frame: the numeric encoding (medians, standardisation,
    top categorical levels; ``FrameEncoder``) is fit inside ``fit``, on the rows the meta-learner is
    fit on. Inside ``nested_oof`` that is the other folds only, so nothing fit on a held fold --
    not even label-free statistics -- predicts that fold; the final combiner's encoder is fit on
    all training rows and serves raw frames.
    """

    inner: Combiner
    categorical_columns: list[str] = field(default_factory=list)
    encoder_: FrameEncoder | None = field(default=None, init=False)

    def fit(self, P: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, extra: Any = None
            ) -> PassthroughCombiner:
        if extra is None:
            raise ValueError("PassthroughCombiner needs the raw feature frame as `extra`")
        self.encoder_ = FrameEncoder(list(self.categorical_columns)).fit(extra)
        self.inner.fit(P, y, w, self.encoder_.transform(extra))
        return self

    def predict(self, P: np.ndarray, extra: Any = None) -> np.ndarray:
        assert self.encoder_ is not None, "fit the combiner first"
        if extra is None:
            raise ValueError("PassthroughCombiner needs the raw feature frame as `extra`")
        return self.inner.predict(P, self.encoder_.transform(extra))


@dataclass(frozen=True)
class PassthroughFactory:
    """Fresh ``PassthroughCombiner`` around a fresh meta-learner from ``meta`` (picklable)."""

    meta: Callable[[], Combiner]
    categorical_columns: tuple[str, ...] = ()

    def __call__(self) -> PassthroughCombiner:
        return PassthroughCombiner(self.meta(), list(self.categorical_columns))


@dataclass
class StackGreedyMix:
    """``stack_weight * stack + (1 - stack_weight) * greedy selection`` over the same members.

    The guard's combiner when neither candidate alone is best on nested OOF. Both parts are fit on
    all OOF rows; the weight was chosen on their nested OOFs (``dynamic_stack``). A weighted mean of
    two probability matrices is one, so nothing is renormalised.
    """

    stack: Combiner
    greedy: GreedySelection
    stack_weight: float

    def fit(self, P: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, extra: Any = None
            ) -> StackGreedyMix:
        """Re-fit both parts on ``P``; the weight stays (it is chosen on nested OOF, not here)."""
        self.stack.fit(P, y, w, extra)
        self.greedy.fit(P, y, w)
        return self

    def predict(self, P: np.ndarray, extra: Any = None) -> np.ndarray:
        a = self.stack_weight
        return a * self.stack.predict(P, extra) + (1.0 - a) * self.greedy.predict(P)


MIX_ROUNDS = 25
"""Greedy-selection rounds over the two candidates (greedy selection's nested OOF, the stack's):
the stack's weight moves in steps of 1/25 at most, as in AutoGluon's weighted ensembles."""


@dataclass
class GuardResult:
    """Outcome of the dynamic-stacking guard.

    ``combiner`` is fit on all OOF rows (apply it to holdout / serving predictions); ``oof`` is the
    nested OOF of the kept combiner (publish this); the losses are the primary-metric losses of the
    nested OOFs over all training rows (``mix_loss``: the mix's, with its weight chosen per fold on
    the other folds; NaN when no mix was tried); ``stack_weight`` is the stack's share of the served
    predictions (0 for greedy selection, 1 for the stack alone).
    """

    used: Literal["stack", "greedy", "mix"]
    combiner: Combiner
    oof: np.ndarray
    stack_loss: float
    greedy_loss: float
    note: str | None
    stack_weight: float = 0.0
    mix_loss: float = float("nan")


def dynamic_stack(
    make_meta: Callable[[], Combiner],
    P: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    loss: LossFn,
    *,
    w: np.ndarray | None = None,
    extra: Any = None,
    rounds: int = 25,
    metric_name: str = "loss",
    greater_is_better: bool = False,
) -> GuardResult:
    """Fit a stack and greedy selection over the same members, and serve the stack, greedy
    selection or a weighted mix of both, as greedy selection over their nested OOFs decides.

    Both candidates are scored the same way: for each shared fold, fit on the other folds' member
    OOF, predict the held fold, then score the assembled nested OOF with the task's primary metric.
    A third greedy selection (``MIX_ROUNDS``) then weights the two nested OOFs, greedy selection's
    first so that a tie goes to it (the lower-capacity model). A mix's own OOF is nested once more
    (each fold's weight chosen on the other folds' rows). Of greedy selection, the stack and the mix,
    the one with the best nested OOF is served; ties go to the lower capacity, in that order.
    """
    P = check_stack(P, y)
    stack_oof = nested_oof(make_meta, P, y, folds, w, extra)
    greedy_oof = nested_oof(lambda: GreedySelection(loss, rounds), P, y, folds, w)
    s_loss, g_loss = loss(y, stack_oof, w), loss(y, greedy_oof, w)
    sign = -1.0 if greater_is_better else 1.0  # losses of greater-is-better metrics are negated
    both = np.stack([greedy_oof, stack_oof])
    a = float(GreedySelection(loss, MIX_ROUNDS).fit(both, y, w).weights_[1])
    m_loss, mix_oof = float("nan"), None
    if 0.0 < a < 1.0:
        mix_oof = nested_oof(lambda: GreedySelection(loss, MIX_ROUNDS), both, y, folds, w)
        m_loss = loss(y, mix_oof, w)
    if mix_oof is not None and m_loss < min(g_loss, s_loss):
        note = (f"stacking mixed with greedy selection, stack weight {a:.2f} (nested OOF {metric_name}: "
                f"mix {sign * m_loss:.5f}, stack {sign * s_loss:.5f}, greedy selection {sign * g_loss:.5f})")
        mix = StackGreedyMix(make_meta().fit(P, y, w, extra), GreedySelection(loss, rounds).fit(P, y, w), a)
        return GuardResult("mix", mix, mix_oof, s_loss, g_loss, note, a, m_loss)
    if s_loss < g_loss:
        return GuardResult("stack", make_meta().fit(P, y, w, extra), stack_oof, s_loss, g_loss, None, 1.0, m_loss)
    tried = "" if mix_oof is None else f", a mix with stack weight {a:.2f} {sign * m_loss:.5f}"
    note = (f"stacking lost to greedy selection on nested OOF ({metric_name} {sign * s_loss:.5f} vs "
            f"{sign * g_loss:.5f}{tried}); using greedy selection")
    return GuardResult("greedy", GreedySelection(loss, rounds).fit(P, y, w), greedy_oof, s_loss, g_loss, note,
                       0.0, m_loss)

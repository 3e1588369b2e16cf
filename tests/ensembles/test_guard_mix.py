"""The dynamic-stacking guard's third outcome: a weighted mix of the stack and greedy selection,
served when its (doubly) nested OOF beats both, as AutoGluon's last weighted ensemble weights its
stack models against each other."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

import numpy as np
import pytest
from obsrv.service_tasks.ensembles import stack_tasks
from obsrv.service_tasks.ensembles.base import MetricLoss
from obsrv.service_tasks.ensembles.greedy import GreedySelection
from obsrv.service_tasks.ensembles.stacking import (
    GuardResult,
    MetaFactory,
    StackGreedyMix,
    dynamic_stack,
)

from support.ensemble_pool import fake_context
from ensembles.test_tasks import _check_outputs


@dataclass
class ExtraSignal:
    """A stand-in stack that predicts from its passthrough input alone: a third noisy view of the
    target, independent of the members' noise, so that neither it nor greedy selection over the
    members is best alone and their mix is."""

    mean_: float = field(default=0.0, init=False)

    def fit(self, P: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, extra: np.ndarray | None = None
            ) -> "ExtraSignal":
        self.mean_ = float(np.mean(y - extra[:, 0]))
        return self

    def predict(self, P: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
        return (extra[:, 0] + self.mean_)[:, None]


def _three_views(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n) * 3
    P = (y[None, :] + rng.normal(size=(3, n)) * 1.0)[:, :, None]  # greedy's average: noise sd 0.58
    extra = (y + rng.normal(size=n) * 0.8)[:, None]  # the stand-in stack: noise sd 0.8, independent
    return P, y, extra, rng.integers(0, 5, n)


def test_the_guard_serves_a_mix_when_neither_candidate_alone_is_best() -> None:
    P, y, extra, folds = _three_views()
    loss = MetricLoss("rmse", "regression")
    res = dynamic_stack(ExtraSignal, P, y, folds, loss, extra=extra, metric_name="rmse")
    assert res.used == "mix"
    # the best weight on independent errors of sd 0.58 (greedy) and 0.8 (stack) is 0.58^2/(0.58^2+0.8^2) = 0.34
    assert 0.2 <= res.stack_weight <= 0.5, res.stack_weight
    assert res.mix_loss < min(res.stack_loss, res.greedy_loss) - 0.04, (res.mix_loss, res.stack_loss, res.greedy_loss)
    assert res.note is not None and res.note.startswith(f"stacking mixed with greedy selection, stack weight {res.stack_weight:.2f}")
    assert isinstance(res.combiner, StackGreedyMix) and res.combiner.stack_weight == res.stack_weight
    assert np.isclose(loss(y, res.oof), res.mix_loss)

    # served: exactly the weighted mean of its two fitted parts, and the same after a pickle round trip
    P_new, _, extra_new, _ = _three_views(n=50, seed=1)
    a = res.stack_weight
    expected = a * res.combiner.stack.predict(P_new, extra_new) + (1 - a) * res.combiner.greedy.predict(P_new)
    np.testing.assert_allclose(res.combiner.predict(P_new, extra_new), expected)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(res.combiner)).predict(P_new, extra_new), expected)


def test_the_mix_weight_of_each_fold_is_chosen_without_that_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mix's published OOF is nested: the two-candidate selection that weights fold f's rows is
    fit on the other folds' rows only (and the served weight on all rows, once)."""
    P, y, extra, folds = _three_views()
    sizes: list[int] = []
    fit = GreedySelection.fit

    def spy(self: GreedySelection, P2: np.ndarray, y2: np.ndarray, w=None, extra=None) -> GreedySelection:
        if P2.shape[0] == 2:  # the selection over (greedy OOF, stack OOF); the members are 3
            sizes.append(len(y2))
        return fit(self, P2, y2, w, extra)

    monkeypatch.setattr(GreedySelection, "fit", spy)
    res = dynamic_stack(ExtraSignal, P, y, folds, MetricLoss("rmse", "regression"), extra=extra)
    assert res.used == "mix"
    assert sizes == [len(y)] + [int((folds != f).sum()) for f in range(5)]


def test_a_mix_that_does_not_beat_the_stack_alone_is_not_served() -> None:
    """Over-confident members that a logit GLM re-scales: the stack alone wins on nested OOF, and a
    mix with the (badly calibrated) greedy selection is not served even if the all-row weight is not 1."""
    rng = np.random.default_rng(2)
    n = 1500
    y = rng.integers(0, 2, n)
    z = ((2 * y - 1)[None, :] * np.array([1.2, 0.9, 0.5, 0.0])[:, None] + rng.normal(size=(4, n))) * 4
    p = 1 / (1 + np.exp(-z))
    P = np.stack([1 - p, p], axis=2)
    res = dynamic_stack(MetaFactory("linear", "classification", 2), P, y, rng.integers(0, 5, n),
                        MetricLoss("logloss", "classification"))
    assert res.used == "stack" and res.stack_weight == 1.0
    assert res.stack_loss < res.greedy_loss
    assert np.isnan(res.mix_loss) or res.mix_loss >= res.stack_loss


def test_a_stack_task_publishes_and_serves_a_mix(binary_setup, monkeypatch: pytest.MonkeyPatch) -> None:
    """What stack_top_any does with a mix: the params name it and its weight, the greedy part's
    member weights and the linear stack's coefficients are logged, the nested figures of all three
    are metrics, and the served predictor reproduces the holdout predictions."""
    real = stack_tasks.dynamic_stack

    def mixed(make_meta, P, y, folds, loss, **kw) -> GuardResult:
        res = real(make_meta, P, y, folds, loss, **kw)
        mix = StackGreedyMix(make_meta().fit(P, y, kw.get("w"), kw.get("extra")),
                             GreedySelection(loss).fit(P, y, kw.get("w")), 0.4)
        return GuardResult("mix", mix, res.oof, res.stack_loss, res.greedy_loss, "mixed", 0.4, res.greedy_loss - 0.01)

    monkeypatch.setattr(stack_tasks, "dynamic_stack", mixed)
    data, pool, preds = binary_setup
    ctx = fake_context(data, pool, preds, {"task": "stack_top_any", "stack": {"top_n": 3}}, metric="auc")
    stack_tasks.stack_top_any(ctx)
    o = ctx.published[0]
    assert o.params["combiner"] == "mix" and o.params["stack_weight"] == 0.4
    assert set(o.params["weights"]) == set(o.params["members"]) == set(o.params["coefficients"])
    assert np.isclose(sum(o.params["weights"].values()), 1.0)
    assert set(o.metrics) == {"nested_oof_auc/stack", "nested_oof_auc/greedy", "nested_oof_auc/mix"}
    assert isinstance(o.predictor.combiner, StackGreedyMix)
    _check_outputs(ctx, data)

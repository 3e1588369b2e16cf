"""`--time-limit` planning: budgets shrink with the time left and grow back when tasks run fast."""

from __future__ import annotations

import pytest

from obsrv.service_tasks.local.budget_plan import DEFAULT_OVERHEAD_S, MIN_SEARCH_S, STAGE_PRIOR_S, TimePlan

D = DEFAULT_OVERHEAD_S


def test_budget_spreads_the_time_left_over_waves_of_parallel_tasks() -> None:
    plan = TimePlan(limit_s=100.0, jobs=2)
    # 8 families on 2 slots -> 4 waves; reserve = their overheads over 2 slots, plus 3 ensembles:
    # 3 * D over 2 slots, or their chain of 2 * D when that is longer
    budget = plan.budget(5.0, ["base"] * 8, ["vote_weight", "stack_top_any", "evaluate"], others_chain_s=2 * D)
    assert budget == pytest.approx((100.0 - 5.0 - (8 * D / 2 + max(3 * D / 2, 2 * D))) * 2 / 8)
    # the last searching task may use every remaining second but the reserve
    assert plan.budget(50.0, ["base"], []) == pytest.approx(50.0 - D / 2)


def test_heavier_stages_reserve_their_prior() -> None:
    plan = TimePlan(limit_s=100.0, jobs=1)
    light = plan.budget(0.0, ["base", "base"], [])
    heavy = plan.budget(0.0, ["base", "boost"], [])
    assert (light - heavy) * 2 == pytest.approx(STAGE_PRIOR_S["boost"] - D)


def test_routing_tasks_share_the_time_like_search_tasks() -> None:
    """The routing tasks start after every base task; their per-route fits take a budget of their
    own, so the bases leave them a share instead of a fixed guess of their whole wall time."""
    plan = TimePlan(limit_s=100.0, jobs=2)
    route = STAGE_PRIOR_S["route_cluster"]
    # at the start: 2 bases and 2 routing tasks share what is left after their overheads
    first = plan.budget(0.0, ["base", "base", "route_cluster", "route_feature"], ["evaluate"])
    assert first == pytest.approx((100.0 - (2 * D + 2 * route) / 2 - D / 2) * 2 / 4)
    # the routing tasks, last of the budgeted tasks, split all that is left but the reserve
    assert plan.budget(60.0, ["route_cluster", "route_feature"], ["evaluate"], others_chain_s=D) == pytest.approx(
        100.0 - 60.0 - 2 * route / 2 - D)


def test_budget_never_drops_below_the_minimum() -> None:
    plan = TimePlan(limit_s=10.0, jobs=1)
    assert plan.budget(30.0, ["base"] * 5, ["vote_weight"] * 5) == MIN_SEARCH_S


def test_observed_times_replace_the_priors() -> None:
    plan = TimePlan(limit_s=100.0, jobs=1)
    before = plan.budget(0.0, ["base", "base", "route_cluster"], ["vote_weight"])
    plan.record("base", wall_s=11.0, budget_s=10.0)  # 1 s overhead
    plan.record("vote_weight", wall_s=1.0, budget_s=None)
    plan.record("route_cluster", wall_s=6.0, budget_s=4.0)  # 2 s overhead
    plan.record("prepare", wall_s=60.0, budget_s=None)  # ignored: once per run, includes start-up
    assert plan.expected("stack_top_any") == pytest.approx(1.0)  # unseen: like the light stages seen
    assert plan.expected("route_feature") == pytest.approx(STAGE_PRIOR_S["route_feature"])  # its own prior
    after = plan.budget(0.0, ["base", "base", "route_cluster"], ["vote_weight"])
    assert after == pytest.approx((100.0 - (2 * 1.0 + 2.0 + 1.0)) / 3)
    assert after > before

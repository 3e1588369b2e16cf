"""The vote_* task wrappers: soft/hard/rank votes of picked members, and greedy weights."""

from __future__ import annotations

from obsrv.service_tasks.contract import ModelOutput, TaskContext
from .base import best_of_family, nested_oof
from .greedy import GreedySelection
from .voting import SoftVote, make_vote, select_diverse
from .job import load_job, _weights_metrics, _publish, _predictor


def vote_top_alg(ctx: TaskContext) -> None:
    """Soft vote (plain mean) of the best model of each of the top ``top_alg`` families."""
    job = load_job(ctx)
    idx = best_of_family(job.order, job.pool.families, job.task.vote.top_alg)
    P, H = job.stack(idx)
    vote = SoftVote()
    _publish(job, [ModelOutput("vote", "vote_top_alg", _predictor(job, idx, vote), vote.predict(P),
                               job.on_holdout(lambda: vote.predict(H)),
                               params={"members": job.names(idx), "mode": "soft"})])


def vote_mix(ctx: TaskContext) -> None:
    """Vote over a diverse mix: up to ``top_n`` strong, least-correlated models (``mode``: soft,
    hard or rank). The rank vote's reference distributions (and, for regression, the target
    quantiles) are learned, so its OOF is nested on the shared folds."""
    job = load_job(ctx)
    p = job.task.vote
    d = job.data
    idx = select_diverse(job.pool.oof, job.pool.oof_score, p.top_n, greater_is_better=job.greater)
    P, H = job.stack(idx)
    vote = make_vote(p.mode, d.problem).fit(P, d.y_train, d.w_train)
    oof = nested_oof(lambda: make_vote(p.mode, d.problem), P, d.y_train, d.folds, d.w_train) \
        if p.mode == "rank" else vote.predict(P)
    _publish(job, [ModelOutput("vote", "vote_mix", _predictor(job, idx, vote), oof,
                               job.on_holdout(lambda: vote.predict(H)),
                               params={"members": job.names(idx), "mode": p.mode})])


def vote_weight(ctx: TaskContext) -> None:
    """Caruana greedy ensemble selection with replacement over the top ``top_n`` models: ``rounds``
    rounds, best prefix kept, ties to models already chosen, weights = pick counts / prefix length
    (logged as params and as ``weight/<model>`` metrics). OOF = nested (weights chosen on the other
    folds)."""
    job = load_job(ctx)
    p = job.task.vote
    d = job.data
    idx = [int(i) for i in job.order[: p.top_n]]
    P, H = job.stack(idx)
    ges = GreedySelection(job.loss, p.rounds).fit(P, d.y_train, d.w_train)
    oof = nested_oof(lambda: GreedySelection(job.loss, p.rounds), P, d.y_train, d.folds, d.w_train)
    names = job.names(idx)
    params = {"members": names, "weights": dict(zip(names, map(float, ges.weights_))),
              "rounds": p.rounds, "best_round": ges.best_round_ + 1}
    _publish(job, [ModelOutput("vote", "vote_weight", _predictor(job, idx, ges), oof,
                               job.on_holdout(lambda: ges.predict(H)),
                               params=params, metrics=_weights_metrics(names, ges.weights_))])

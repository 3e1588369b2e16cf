"""The `evaluate` stage: the holdout leaderboard, the champion, and the HTML report.

Candidates: every base model plus every `is_final` model of the user tasks (from the `models`
tables of `request.upstream`). Each is scored on the holdout with all the spec's metrics. For a
binary problem the threshold of accuracy, f1, precision and recall is tuned per model on its OOF
predictions (never on the holdout) and then applied to the holdout. The champion is the best model by
the primary metric on its out-of-fold predictions (`oof_<primary>`): choosing it on the holdout
would make the holdout figure of the champion optimistic, since the best of many noisy holdout
scores is biased upward. The holdout stays an untouched estimate. The champion is registered (`<context.name>` locally, `catalog.schema.<context.name>` in
Unity Catalog) with the alias `champion`.

With `context.holdout: 0` there is no holdout: every row trains, and the leaderboard reports the
out-of-fold scores instead (column `scored_on` = `oof`). The champion is chosen on those same
scores, so its figure is optimistic; the report says so.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np
import pandas as pd

from obsrv.service_tasks import metrics as M
from obsrv.service_tasks import tracking
from obsrv.service_tasks.context import RuntimeContext
from obsrv.service_tasks.errors import TaskError
from obsrv.service_tasks.io import leaderboard_table, on_databricks


def candidate_models(ctx: RuntimeContext) -> pd.DataFrame:
    rows = ctx.model_rows(list(ctx.request.upstream))
    if rows.empty:
        raise TaskError("evaluate found no upstream models; the base and ensemble tasks must run first.")
    keep = (rows["kind"] == "base") | rows["is_final"].astype(bool)
    return rows.loc[keep].reset_index(drop=True)


def thresholds_from_oof(metrics: list[str], y: np.ndarray, oof: np.ndarray, w: np.ndarray | None) -> dict[str, float]:
    """Per threshold metric, the threshold tuned on OOF predictions (binary problems only)."""
    if oof.shape[1] != 2:
        return {}
    return {m: M.tune_threshold(m, y, oof, w) for m in metrics if m in M.THRESHOLD_METRICS}


def champion_threshold_tags(primary: str, thresholds: dict[str, float]) -> dict[str, str]:
    """Model-version tags recording the champion's OOF-tuned threshold for a threshold primary metric
    (binary problems). The served pyfunc does NOT apply it: its `prediction` is the argmax class
    (positive when probability_<positive> > 0.5); callers who want the leaderboard's operating
    point apply `probability_<positive> >= threshold` themselves."""
    if primary not in thresholds:
        return {}
    return {
        f"obsrv.threshold.{primary}": f"{thresholds[primary]:.6g}",
        "obsrv.threshold.note": (
            f"OOF-tuned threshold for {primary} on the positive-class probability (the second "
            + ("probability_ column; for precision/recall the F1-optimal one). " if primary in ("precision", "recall")
               else "probability_ column). ")
            + "The served `prediction` column is the argmax class and does not use "
            "it; apply `probability >= threshold` to reproduce the leaderboard's operating point."
        ),
    }


def scored_rows(ctx: RuntimeContext) -> str:
    """What the leaderboard's metric columns score: ``holdout``, or ``oof`` when the spec keeps no
    holdout (``context.holdout: 0``)."""
    return "holdout" if len(ctx.prepared.y_holdout) else "oof"


def run_evaluate(ctx: RuntimeContext) -> pd.DataFrame:
    req = ctx.request
    prep = ctx.prepared
    metrics = ctx.metric_names
    primary = ctx.primary_metric
    cands = candidate_models(ctx)
    preds = ctx.predictions(sorted(set(cands["task_id"])))
    index = {name: i for i, name in enumerate(preds.models)}
    scored_on = scored_rows(ctx)
    y_eval, w_eval = (prep.y_holdout, prep.w_holdout) if scored_on == "holdout" else (prep.y_train, prep.w_train)
    records, thresholds, scored_preds = [], {}, {}
    for _, row in cands.iterrows():
        i = index[row["model"]]
        oof = preds.oof[i]
        scored = preds.holdout[i] if scored_on == "holdout" else oof
        th = thresholds_from_oof(metrics, prep.y_train, oof, prep.w_train)
        scores = M.score_all(metrics, y_eval, scored, problem=prep.problem, weights=w_eval, thresholds=th)
        selection = M.score(primary, prep.y_train, oof, problem=prep.problem, weights=prep.w_train,
                            threshold=th.get(primary))
        records.append({"task_id": row["task_id"], "kind": row["kind"], "model": row["model"], **scores,
                        f"oof_{primary}": selection})
        thresholds[row["model"]] = th
        scored_preds[row["model"]] = scored
    board = pd.DataFrame(records)
    ascending = not M.greater_is_better(primary)
    # Ranked (and the champion chosen) on OOF; the holdout columns only report.
    order = board[f"oof_{primary}"].fillna(np.inf if ascending else -np.inf)
    board = board.assign(_o=order).sort_values(["_o", "model"], ascending=[ascending, True], kind="mergesort")
    board = board.drop(columns="_o").reset_index(drop=True)
    board["is_champion"] = False
    board.loc[0, "is_champion"] = True
    board["scored_on"] = scored_on
    champion = str(board.loc[0, "model"])
    name = leaderboard_table(req.catalog, req.schema, req.context.source.table, req.workflow_id)
    ctx.store.write(name, board)
    ctx.log(f"leaderboard -> {name}; champion {champion} ({primary}={board.loc[0, primary]:.5f})")

    report = render_report(ctx, board, scored_preds, thresholds)
    out_dir = ctx.home / "runs" / req.workflow_id
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.html").write_text(report, encoding="utf-8")
    (out_dir / "leaderboard.json").write_text(board.to_json(orient="records", indent=1), encoding="utf-8")
    ctx.log(f"report -> {out_dir / 'report.html'}")
    if ctx.mlflow_enabled:
        _log_and_register(ctx, board, cands, champion, report, thresholds)
    return board


def registered_name(ctx: RuntimeContext) -> str:
    """UC `catalog.schema.<model>` on Databricks; the bare model name in the local registry.

    `<model>` is the bundle's registered-model resource as deployed (`--model`; development mode
    prefixes it), else the job name."""
    req = ctx.request
    name = req.model or req.context.name
    return f"{req.catalog}.{req.schema}.{name}" if on_databricks() else name


def _log_and_register(
    ctx: RuntimeContext,
    board: pd.DataFrame,
    cands: pd.DataFrame,
    champion: str,
    report: str,
    thresholds: dict[str, dict[str, float]],
) -> None:
    import mlflow

    ctx.setup_mlflow()
    req = ctx.request
    uri = str(cands.loc[cands["model"] == champion, "model_uri"].iloc[0])
    tags = {"obsrv.workflow_id": req.workflow_id, "obsrv.task_id": req.task_id, "obsrv.kind": "evaluate",
            "obsrv.champion": champion}
    with tracking._retry(lambda: mlflow.start_run(run_name="evaluate", tags=tags)):
        top = board.iloc[0]
        tracking._retry(
            lambda: mlflow.log_metrics(
                {f"champion_{top['scored_on']}_{m}": float(top[m]) for m in ctx.metric_names if np.isfinite(top[m])}
            )
        )
        tracking._retry(lambda: mlflow.log_params({"champion": champion, "n_models": len(board)}))
        tracking._retry(lambda: mlflow.log_text(report, "report.html"))
        tracking._retry(lambda: mlflow.log_table(board, "leaderboard.json"))
        tracking._retry(lambda: mlflow.log_dict(thresholds, "thresholds.json"))
        version_tags = champion_threshold_tags(ctx.primary_metric, thresholds.get(champion, {}))
        if version_tags:
            key = f"obsrv.threshold.{ctx.primary_metric}"
            tracking._retry(lambda: mlflow.log_param(f"champion_threshold_{ctx.primary_metric}", version_tags[key]))
        if uri:
            name = registered_name(ctx)
            version = tracking.register_champion(uri, name, tags=version_tags)
            mlflow.set_tag("obsrv.registered_model", f"{name}@champion (version {version})")
            ctx.log(f"registered {champion} as {name} version {version}, alias champion")


# ------------------------------------------------------------------------------------- report


def _scores_paragraph(scored_on: str, primary: str) -> str:
    """What the leaderboard's figures are, for the report (``primary`` is HTML-escaped)."""
    if scored_on == "holdout":
        return ("Scores on the holdout. Thresholds for accuracy/f1/precision/recall are tuned on each model's "
                "out-of-fold predictions, never on the holdout. The champion (highlighted) is the best by "
                f"out-of-fold {primary} (column oof_{primary}), so the holdout figures stay an unbiased estimate.")
    return ("No holdout (context.holdout: 0): every row trained, and these are out-of-fold scores (ensembles: "
            "nested out-of-fold). Thresholds for accuracy/f1/precision/recall are tuned on the same predictions. "
            f"The champion (highlighted) is the best by out-of-fold {primary}, chosen on these very scores, so "
            "its figures are optimistic; keep a holdout (e.g. context.holdout: 0.2) for an unbiased estimate.")


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(ctx: RuntimeContext, board: pd.DataFrame, scored_preds: dict[str, np.ndarray]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    prep = ctx.prepared
    where = scored_rows(ctx)
    y, w = (prep.y_holdout, prep.w_holdout) if where == "holdout" else (prep.y_train, prep.w_train)
    top = board["model"].tolist()[:8]
    plots = []
    if prep.problem == "classification":
        fig, ax = plt.subplots(figsize=(6, 5))
        for model in top:
            p = scored_preds[model]
            if p.shape[1] == 2:
                fpr, tpr, _ = roc_curve(y, p[:, 1], sample_weight=w)
                label = model
            else:  # multiclass: micro-average one-vs-rest
                onehot = np.eye(p.shape[1])[y]
                wk = None if w is None else np.repeat(w, p.shape[1])
                fpr, tpr, _ = roc_curve(onehot.ravel(), p.ravel(), sample_weight=wk)
                label = f"{model} (micro-avg)"
            ax.plot(fpr, tpr, lw=1.2, label=label)
        ax.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC curves ({where})")
        ax.legend(fontsize=7, loc="lower right")
        plots.append((f"ROC curves ({where})", _png(fig)))
    else:
        champ = top[0]
        pred = scored_preds[champ][:, 0]
        resid = y - pred
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        axes[0].scatter(pred, resid, s=8, alpha=0.6)
        axes[0].axhline(0, color="k", lw=0.8)
        axes[0].set(xlabel="predicted", ylabel="residual", title=f"Residuals: {champ}")
        axes[1].hist(resid, bins=40)
        axes[1].set(xlabel="residual", title="Residual distribution")
        plots.append((f"Residuals of the champion ({where})", _png(fig)))
    return plots


def render_report(
    ctx: RuntimeContext,
    board: pd.DataFrame,
    scored_preds: dict[str, np.ndarray],
    thresholds: dict[str, dict[str, float]],
) -> str:
    req = ctx.request
    prep = ctx.prepared
    metrics = ctx.metric_names
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["#", "model", "task", "kind", *metrics, "thresholds (OOF)"])
    body = []
    for i, r in board.iterrows():
        cells = [str(i + 1), html.escape(r["model"]), html.escape(r["task_id"]), html.escape(r["kind"])]
        cells += [f"{r[m]:.5f}" if pd.notna(r[m]) else "–" for m in metrics]
        th = thresholds.get(r["model"], {})
        cells.append(html.escape(", ".join(f"{k} {v:.3f}" for k, v in th.items()) or "–"))
        style = ' class="champ"' if r["is_champion"] else ""
        body.append(f"<tr{style}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    figures = "".join(
        f"<h2>{html.escape(title)}</h2><img src='{src}' alt='{html.escape(title)}'/>"
        for title, src in _plots(ctx, board, scored_preds)
    )
    summary = {
        "workflow": req.workflow_id,
        "job": req.context.name,
        "problem": prep.problem,
        "train rows": len(prep.y_train),
        "holdout rows": len(prep.y_holdout),
        "folds": f"{prep.n_folds} ({req.context.fold_type})",
        "primary metric": ctx.primary_metric,
    }
    info = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in summary.items())
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>obsrv report {html.escape(req.context.name)} {html.escape(req.workflow_id)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; font-size: 13px; }}
tr.champ {{ background: #e8f5e9; font-weight: 600; }}
</style></head><body>
<h1>{html.escape(req.context.name)}: leaderboard</h1>
<table>{info}</table>
<p>{_scores_paragraph(scored_rows(ctx), html.escape(ctx.primary_metric))}</p>
<table><tr>{head}</tr>{''.join(body)}</table>
{figures}
</body></html>
"""


__all__ = ["run_evaluate", "candidate_models", "thresholds_from_oof", "registered_name", "champion_threshold_tags"]

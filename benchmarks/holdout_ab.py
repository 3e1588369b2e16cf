"""A/B: obsrv with a 20 % holdout against `context.holdout: 0` (every row trains).

    python benchmarks/holdout_ab.py                    # 8 datasets, first outer split, 60 s
    python benchmarks/holdout_ab.py --max-splits 2     # more pairs
    python benchmarks/holdout_ab.py --smoke            # CI smoke: 1 dataset, 1 split, tiny budget

Both arms run in this one process, on the same outer splits of the quality protocol
(`quality.py`'s splits, datasets and obsrv code path: a real compiled workflow run by the local
runner under `--time-limit BUDGET`), one arm after the other on each split, alternating which
goes first. Only the spec's `context.holdout` differs. The outer test fold scores both; obsrv's
own holdout is never used for the figures. Writes `results/holdout_ab.md` and
`results/holdout_ab_runs.csv`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import quality as Q  # noqa: E402

METHODS = ("obsrv_champion", "best_single")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(C.ALL_DATASETS))
    ap.add_argument("--max-splits", type=int, default=1, help="the first N outer splits of each dataset")
    ap.add_argument("--budget", type=float, default=60.0, help="wall-clock seconds per obsrv run")
    ap.add_argument("--holdouts", default="0.2,0", help="the two context.holdout values: A,B")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out-dir", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--work-dir", default=None, help="scratch (default: a temp dir, removed at the end)")
    ap.add_argument("--smoke", action="store_true", help="1 dataset, 1 split, 600 rows, tiny budget (CI)")
    args = ap.parse_args(argv)
    if args.smoke:
        args.datasets = "credit_data" if args.datasets == ",".join(C.ALL_DATASETS) else args.datasets
        args.max_splits, args.budget = 1, min(args.budget, 8.0)
    return args


def quality_args(args: argparse.Namespace, holdout: float) -> argparse.Namespace:
    """quality.py's arguments for one arm: its defaults, this run's budget and seed, one holdout."""
    qa = Q.parse_args(["--budget", str(args.budget), "--seed", str(args.seed), "--obsrv-holdout", str(holdout)]
                      + (["--smoke"] if args.smoke else []))
    return qa


def run(args: argparse.Namespace, work: Path, raw_csv: Path | None = None) -> pd.DataFrame:
    """Both arms on every planned split; the rows so far go to ``raw_csv`` after each split, so a
    run cut short keeps what it measured."""
    arms = [float(h) for h in args.holdouts.split(",")]
    if len(arms) != 2 or arms[0] == arms[1]:
        raise SystemExit(f"--holdouts takes two different values, got {args.holdouts!r}")
    plan = []
    for name in args.datasets.split(","):
        ds = C.load_dataset(name)
        if args.smoke:
            from sklearn.model_selection import train_test_split

            keep, _ = train_test_split(ds.frame, train_size=600, stratify=ds.frame[C.TARGET], random_state=args.seed)
            ds = C.Dataset(ds.name, keep.reset_index(drop=True), ds.segment_column)
        splits = C.outer_splits(ds.frame[C.TARGET].to_numpy(), 5, 2)[: args.max_splits]
        plan += [(ordinal, ds, split) for ordinal, split in enumerate(splits)]
    plan.sort(key=lambda p: p[0])  # split-major, as quality.py
    rows: list[dict] = []
    for i, (_, ds, split) in enumerate(plan):
        order = arms if i % 2 == 0 else arms[::-1]  # alternate which arm runs first
        for h in order:
            got = Q.run_split(ds, split, quality_args(args, h), {"obsrv"}, work / f"holdout_{h:g}")
            rows += [dict(r, holdout=h) for r in got if r["method"] in METHODS]
        print(f"[holdout_ab] {i + 1}/{len(plan)} splits done", flush=True)
        if raw_csv is not None:
            pd.DataFrame(rows).to_csv(raw_csv, index=False)
    return pd.DataFrame(rows)


def summarise(runs: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]] | None:
    """Per dataset: both arms' mean primary metric; overall: wins, Wilcoxon p, relative loss change.
    None when the champion did not run in both arms anywhere (the report then lists the failures)."""
    from scipy.stats import wilcoxon

    ok = runs[runs.status == "ok"].copy()
    ok["loss"] = [C.primary_loss(r, int(r.n_classes)) for _, r in ok.iterrows()]
    ok["primary"] = np.where(ok.n_classes == 2, ok["auc"], ok["logloss"])
    arms = sorted(ok.loc[ok.method == "obsrv_champion", "holdout"].unique(), reverse=True)
    if len(arms) != 2:
        return None
    a, b = arms  # a: the larger holdout (the default 0.2), b: the smaller (0)
    table = ok.pivot_table(index=["dataset", "method"], columns="holdout", values=["primary", "fit_s"], aggfunc="mean")
    champ = ok[ok.method == "obsrv_champion"].pivot_table(index=["dataset", "repeat", "fold"], columns="holdout",
                                                           values="loss")
    champ = champ[[a, b]].dropna()
    d = champ[a] - champ[b]  # > 0: the arm without holdout has the lower loss
    per_ds = champ.groupby(level="dataset").mean()
    notes = ok[ok.method == "obsrv_champion"].assign(rows=lambda f: [json.loads(n).get("obsrv_train_rows", np.nan)
                                                                     for n in f.notes])
    train_rows = notes.groupby("holdout")["rows"].mean()
    figures = {
        "train_rows_a": float(train_rows.get(a, np.nan)),
        "train_rows_b": float(train_rows.get(b, np.nan)),
        "pairs": float(len(champ)),
        "wins_b": float((d > 0).sum()),
        "wilcoxon_p": float(wilcoxon(champ[a], champ[b]).pvalue) if len(d) > 1 and (d != 0).any() else float("nan"),
        "rel_loss_reduction": float(((per_ds[a] - per_ds[b]) / per_ds[a]).mean()) if len(per_ds) else float("nan"),
        "a": a,
        "b": b,
    }
    return table, figures


def render(runs: pd.DataFrame, meta: dict, path: Path) -> str:
    head = [
        f"Date {meta['date']}; git `{meta['git']}`; machine {meta['machine']}; command `{meta['command']}`; "
        f"wall time {meta['wall_s'] / 60:.1f} min.",
        "",
    ]
    summary = summarise(runs)
    if summary is None:
        lines = ["# obsrv: context.holdout A/B", ""] + head + ["The obsrv champion did not run in both arms on "
                                                               "any split: no comparison."]
    else:
        lines = _comparison(*summary, head, meta)
    failed = runs[runs.status != "ok"]
    if len(failed):
        lines += ["", "Failed runs:", ""] + [f"- {r.dataset} r{r.repeat}f{r.fold} holdout {r.holdout:g} {r.method}: "
                                              f"{r.status}" for r in failed.itertuples()]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def _comparison(table: pd.DataFrame, f: dict[str, float], head: list[str], meta: dict) -> list[str]:
    a, b = f["a"], f["b"]
    lines = [
        f"# obsrv: holdout {a:g} against holdout {b:g} (A/B)",
        "",
        *head,
        f"Both arms ran in this one run on the same outer splits of the quality protocol, obsrv's real code path, "
        f"`--time-limit {meta['budget']:g}`; only `context.holdout` differs ({a:g} vs {b:g}). Scores are on the "
        "outer test fold. Primary metric: AUC for binary sets (higher is better), log-loss for multiclass (lower).",
        "",
        f"**obsrv champion, holdout {b:g} vs {a:g}:** better on {f['wins_b']:.0f} of {f['pairs']:.0f} splits "
        f"(Wilcoxon p = {f['wilcoxon_p']:.3f}); mean relative loss reduction per dataset "
        f"{100 * f['rel_loss_reduction']:+.2f} % (loss = 1 − AUC or log-loss). obsrv's models trained on "
        f"{f['train_rows_a']:.0f} rows on average with holdout {a:g} and {f['train_rows_b']:.0f} with {b:g}.",
        "",
        f"| dataset | method | primary, holdout {a:g} | primary, holdout {b:g} | fit s, {a:g} | fit s, {b:g} |",
        "|---|---|---|---|---|---|",
    ]
    for (ds, method), r in table.iterrows():
        cells = [r.get((k, arm), np.nan) for k in ("primary", "fit_s") for arm in (a, b)]
        lines.append(f"| {ds} | {method} | {cells[0]:.4f} | {cells[1]:.4f} | {cells[2]:.1f} | {cells[3]:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warnings.filterwarnings("ignore")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "holdout_ab_smoke" if args.smoke else "holdout_ab"
    command = "python benchmarks/holdout_ab.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    started = time.time()
    work_ctx = tempfile.TemporaryDirectory(prefix="obsrv_holdout_ab_") if args.work_dir is None else None
    try:
        runs = run(args, Path(work_ctx.name if work_ctx else args.work_dir), out_dir / f"{stem}_runs.csv")
    finally:
        if work_ctx is not None:
            work_ctx.cleanup()
    runs.to_csv(out_dir / f"{stem}_runs.csv", index=False)
    meta = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "git": C.git_revision(),
            "machine": C.machine_label(), "command": command.strip(),
            "wall_s": time.time() - started, "budget": args.budget}
    print(render(runs, meta, out_dir / f"{stem}.md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

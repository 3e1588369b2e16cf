"""A/B of two versions of obsrv's code on the quality protocol's splits: does a change help?

    python benchmarks/code_ab.py --a HEAD~1 --b HEAD        # 8 datasets, first outer split, 60 s
    python benchmarks/code_ab.py --a main --b WORKTREE      # B = this checkout, uncommitted edits included
    python benchmarks/code_ab.py --smoke                    # 1 dataset, 1 split, 600 rows, tiny budget

Each arm's obsrv comes from a git worktree of its ref: a PYTHONPATH shim maps `obsrv.compiler`,
`obsrv.service_tasks` and `obsrv.templates` onto it, as pyproject's `package-dir` does, ahead of the
installed package. The harness (datasets, outer splits, obsrv adapter, scoring) is this checkout's
`quality.py` for both arms, run as `quality.py --methods obsrv` in its own process per arm and
dataset, alternating which arm goes first. Only obsrv's code differs; the outer test fold scores
both. Writes `results/code_ab.md` and `results/code_ab_runs.csv` (`--out-dir`, `--stem`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency provides the same parser
    import tomli as tomllib  # type: ignore[no-redef]

WORKTREE = "WORKTREE"
METHODS = ("obsrv_champion", "best_single")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", default="HEAD", help="git ref of arm A (default HEAD)")
    ap.add_argument("--b", default=WORKTREE, help=f"git ref of arm B, or {WORKTREE} for this checkout as it is")
    ap.add_argument("--datasets", default=",".join(C.ALL_DATASETS))
    ap.add_argument("--max-splits", type=int, default=1, help="the first N outer splits of each dataset")
    ap.add_argument("--budget", type=float, default=60.0, help="obsrv's --time-limit per run")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out-dir", default=str(C.BENCH_DIR / "results"))
    ap.add_argument("--work-dir", default=None, help="scratch, empty or new (default: a temp dir, removed at the end)")
    ap.add_argument("--stem", default="code_ab", help="report names: STEM.md and STEM_runs.csv, one per A/B kept")
    ap.add_argument("--smoke", action="store_true", help="quality.py's smoke mode in both arms (1 dataset, 600 rows)")
    ap.add_argument("--report", action="append", default=[], metavar="METHOD",
                    help="a method to compare beside the champion and the best single model (e.g. obsrv:boost)")
    ap.add_argument("--rerender", action="store_true",
                    help="run nothing: render STEM.md again from STEM_runs.csv and STEM_meta.json in --out-dir")
    args = ap.parse_args(argv)
    if args.smoke:
        args.datasets = "credit_data" if args.datasets == ",".join(C.ALL_DATASETS) else args.datasets
        args.max_splits, args.budget = 1, min(args.budget, 8.0)  # what quality.py --smoke runs with
    return args


def package_dirs(root: Path = C.REPO_ROOT) -> dict[str, str]:
    """pyproject's ``package-dir``: import name -> folder, e.g. ``obsrv.compiler`` -> ``compiler``."""
    return tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]


def checkout(ref: str, dest: Path) -> Path:
    """A detached git worktree of ``ref`` at ``dest`` (``WORKTREE``: this checkout itself)."""
    if ref == WORKTREE:
        return C.REPO_ROOT
    res = subprocess.run(["git", "worktree", "add", "--detach", str(dest), ref], cwd=C.REPO_ROOT,
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"code_ab: cannot check out {ref!r}: {res.stderr.strip()}")
    return dest


def shim(code: Path, dest: Path) -> Path:
    """A folder that, first on PYTHONPATH, makes ``import obsrv.<package>`` load ``code``'s files.
    `obsrv` is a namespace package, so the shim's ``obsrv/`` needs no ``__init__``."""
    for name, folder in package_dirs(code).items():
        link = dest.joinpath(*name.split("."))
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(code / folder, target_is_directory=True)
    return dest


def arm_env(shim_dir: Path, code: Path) -> dict[str, str]:
    """The environment of an arm's processes; checks that every obsrv package loads from ``code``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(shim_dir), os.environ.get("PYTHONPATH")])))
    names = sorted(package_dirs(code))
    probe = subprocess.run([sys.executable, "-c", "import importlib, os, sys\nfor n in sys.argv[1:]:\n"
                            "    print(os.path.realpath(importlib.import_module(n).__path__[0]))", *names],
                           env=env, capture_output=True, text=True, cwd=shim_dir.parent)
    loaded = [Path(line) for line in probe.stdout.split()]
    if probe.returncode != 0 or len(loaded) != len(names) or any(code.resolve() not in p.parents for p in loaded):
        raise SystemExit(f"code_ab: the shim for {code} loads obsrv from {', '.join(map(str, loaded)) or '?'} "
                         f"({probe.stderr.strip()[-300:]})")
    return env


def ref_label(ref: str) -> str:
    def sha(r: str) -> str:
        return subprocess.run(["git", "rev-parse", "--short", r], cwd=C.REPO_ROOT, capture_output=True,
                              text=True).stdout.strip() or r

    if ref != WORKTREE:
        return f"{ref} ({sha(ref)})"
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=C.REPO_ROOT,
                           capture_output=True, text=True).stdout
    return f"the working tree, read live ({sha('HEAD')}{' + uncommitted changes' if dirty.strip() else ''})"


def run(args: argparse.Namespace, work: Path) -> pd.DataFrame:
    """Both arms on every dataset's first ``--max-splits`` outer splits; the rows of both arms.
    ``--resume`` only lets an arm's later datasets add to its own CSV: ``work`` starts empty."""
    envs: dict[str, dict[str, str]] = {}
    for arm, ref in (("A", args.a), ("B", args.b)):
        code = checkout(ref, work / f"code_{arm}")
        # the rows' code revision: the arm's obsrv, with this checkout's harness
        revision = f"{ref_label(ref)} with harness {C.code_revision()}"
        envs[arm] = dict(arm_env(shim(code, work / f"shim_{arm}"), code), OBSRV_CODE_REVISION=revision)
    for i, name in enumerate(args.datasets.split(",")):
        for arm in ("A", "B") if i % 2 == 0 else ("B", "A"):  # alternate which arm runs first
            cmd = [sys.executable, str(C.BENCH_DIR / "quality.py"), "--methods", "obsrv", "--datasets", name,
                   "--max-splits", str(args.max_splits), "--budget", str(args.budget), "--seed", str(args.seed),
                   "--work-dir", str(work / arm / "work"), "--out-dir", str(work / arm / "out"), "--resume"]
            print(f"[code_ab] {name} arm {arm} …", flush=True)
            res = subprocess.run(cmd + (["--smoke"] if args.smoke else []), env=envs[arm], cwd=work,
                                 capture_output=True, text=True)
            if res.returncode != 0:
                print(res.stdout[-2000:] + res.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"code_ab: quality.py failed in arm {arm} on {name} (exit {res.returncode})")
    runs_csv = f"{C.quality_stem(smoke=args.smoke, budget=args.budget)}_runs.csv"
    frames = [pd.read_csv(work / arm / "out" / runs_csv).assign(arm=arm) for arm in ("A", "B")]
    return pd.concat(frames, ignore_index=True)


def summarise(runs: pd.DataFrame, methods: tuple[str, ...] = METHODS) -> dict[str, dict[str, float]]:
    """Per method, over the splits both arms ran: B's wins (lower loss), a Wilcoxon signed-rank test
    of the per-split relative loss changes (relative, so that log-loss sets do not outweigh AUC
    sets), the mean relative loss reduction per dataset (> 0: B better) and each arm's mean wall time."""
    from scipy.stats import wilcoxon

    ok = runs[(runs.status == "ok") & runs.method.isin(methods)].copy()
    ok["loss"] = [C.primary_loss(r, int(r.n_classes)) for _, r in ok.iterrows()]
    out = {}
    for method, rows in ok.groupby("method"):
        paired = rows.pivot_table(index=["dataset", "repeat", "fold"], columns="arm", values=["loss", "fit_s"])
        if not {("loss", "A"), ("loss", "B")} <= set(paired.columns):
            continue
        paired = paired.dropna()
        loss, fit = paired["loss"], paired["fit_s"]
        rel = (loss.A - loss.B) / loss.A.where(loss.A > 0)  # > 0: B lost less; undefined at a perfect A
        per_ds = loss.groupby(level="dataset").mean()
        out[str(method)] = {
            "pairs": float(len(loss)), "wins_b": float((loss.A > loss.B).sum()),
            "ties": float((loss.A == loss.B).sum()),
            "wilcoxon_p": float(wilcoxon(rel.dropna()).pvalue) if (rel.dropna() != 0).sum() > 1 else float("nan"),
            "rel_loss_reduction": float(((per_ds.A - per_ds.B) / per_ds.A.where(per_ds.A > 0)).mean()),
            "fit_s_a": float(fit.A.mean()), "fit_s_b": float(fit.B.mean()),
        }
    return out


def render(runs: pd.DataFrame, meta: dict[str, object], path: Path) -> str:
    methods = METHODS + tuple(meta.get("report", ()))  # type: ignore[arg-type]
    summary = summarise(runs, methods)
    lines = [
        "# obsrv: code A/B on the quality protocol",
        "",
        f"Date {meta['date']}; machine {meta['machine']}; command `{meta['command']}`; wall time "
        f"{meta['wall_s'] / 60:.1f} min.",
        "",
        f"- **A:** {meta['a']}",
        f"- **B:** {meta['b']}",
        "",
        f"Both arms ran in this one run on the same outer splits, obsrv's real code path under "
        f"`--time-limit {meta['budget']:g}`; only obsrv's code differs. Scores are on the outer test fold. "
        "Primary metric: AUC for binary sets (higher is better), log-loss for multiclass and RMSE for "
        "regression (lower); loss = 1 − AUC, log-loss or RMSE.",
        "",
    ]
    for method, f in summary.items():
        lines.append(f"**{method}, B vs A:** lower loss on {f['wins_b']:.0f} of {f['pairs']:.0f} splits "
                     f"({f['ties']:.0f} ties; Wilcoxon p = {f['wilcoxon_p']:.3f}); mean relative loss reduction "
                     f"per dataset {100 * f['rel_loss_reduction']:+.2f} %; mean obsrv wall time "
                     f"{f['fit_s_a']:.1f} s (A) vs {f['fit_s_b']:.1f} s (B).")
        lines.append("")
    if not summary:
        lines += ["No method ran in both arms: no comparison.", ""]
    ok = runs[(runs.status == "ok") & runs.method.isin(methods)].copy()
    ok["primary"], _ = C.primary_columns(ok)
    table = ok.pivot_table(index=["dataset", "method"], columns="arm", values=["primary", "fit_s"], aggfunc="mean")
    lines += ["| dataset | method | primary, A | primary, B | fit s, A | fit s, B |", "|---|---|---|---|---|---|"]
    for (ds, method), r in table.iterrows():
        cells = [r.get((k, arm), np.nan) for k in ("primary", "fit_s") for arm in ("A", "B")]
        lines.append(f"| {ds} | {method} | {cells[0]:.4f} | {cells[1]:.4f} | {cells[2]:.1f} | {cells[3]:.1f} |")
    failed = runs[(runs.status != "ok") & runs.method.isin(methods)]
    if len(failed):
        lines += ["", "Failed runs:", ""] + [f"- {r.dataset} r{r.repeat}f{r.fold} arm {r.arm} {r.method}: {r.status}"
                                              for r in failed.itertuples()]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir = Path(args.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{args.stem}_smoke" if args.smoke else args.stem
    if args.rerender:
        meta = json.loads((out_dir / f"{stem}_meta.json").read_text()) | {"report": args.report}
        print(render(pd.read_csv(out_dir / f"{stem}_runs.csv"), meta, out_dir / f"{stem}.md"))
        return 0
    command = "python benchmarks/code_ab.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    started = time.time()
    meta = {"a": ref_label(args.a), "b": ref_label(args.b)}  # before any checkout: what the refs are now
    work_ctx = tempfile.TemporaryDirectory(prefix="obsrv_code_ab_") if args.work_dir is None else None
    work = Path(work_ctx.name if work_ctx else args.work_dir).resolve()
    if work.exists() and any(work.iterdir()):  # an earlier A/B's rows would be resumed as this one's
        raise SystemExit(f"code_ab: --work-dir {work} is not empty; give a new or empty folder")
    work.mkdir(parents=True, exist_ok=True)
    try:
        runs = run(args, work)
    finally:
        for arm in ("A", "B"):
            if (work / f"code_{arm}" / ".git").exists():
                subprocess.run(["git", "worktree", "remove", "--force", str(work / f"code_{arm}")], cwd=C.REPO_ROOT,
                               capture_output=True)
        if work_ctx is not None:
            work_ctx.cleanup()
    runs.to_csv(out_dir / f"{stem}_runs.csv", index=False)
    meta |= {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": C.machine_label(),
             "command": command.strip(), "wall_s": time.time() - started, "budget": args.budget,
             "report": args.report}
    (out_dir / f"{stem}_meta.json").write_text(json.dumps(meta, indent=1))
    print(render(runs, meta, out_dir / f"{stem}.md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

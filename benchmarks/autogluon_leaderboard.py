"""AutoGluon's own leaderboard on one quality split: which of its models, at which stack level,
carry its score (run with the peers venv's python, on a split directory quality.py wrote).

    benchmarks/.venv-peers/bin/python benchmarks/autogluon_leaderboard.py WORK/concrete/r0f0

The fit is peers_runner.py's (best_quality, 60 s, 2 CPUs, no DyStack below 120 s); the leaderboard
scores every model on the split's outer test fold (AutoGluon's sign: higher is better).
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path

import pandas as pd


def main(split_dir: str, budget: int = 60) -> int:
    from autogluon.tabular import TabularPredictor

    warnings.filterwarnings("ignore")
    d = Path(split_dir)
    meta = json.loads((d / "meta.json").read_text())
    train, test = pd.read_parquet(d / "train.parquet"), pd.read_parquet(d / "test.parquet")
    classes = meta["classes"]
    metric = "root_mean_squared_error" if not classes else ("roc_auc" if len(classes) == 2 else "log_loss")
    with tempfile.TemporaryDirectory(prefix="ag_lb_") as path:
        p = TabularPredictor(label=meta["target"], problem_type=None if classes else "regression",
                             eval_metric=metric, path=path, verbosity=0)
        p.fit(train, presets="best_quality", time_limit=budget, num_cpus=2, num_gpus=0,
              dynamic_stacking="auto" if budget >= 120 else False)
        lb = p.leaderboard(test, silent=True)
        print(f"{d.parent.name} {d.name}: best model {p.model_best} ({metric})")
        print(lb[["model", "score_test", "score_val", "fit_time", "stack_level"]].to_markdown(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

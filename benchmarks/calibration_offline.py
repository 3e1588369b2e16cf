"""Temperature scaling's effect on the very same fitted models, free of machine load: for each model a
``code_ab.py`` arm published (``--work-dir`` kept), the OOF log-loss as published and after nested
scaling (each shared fold's rows scaled by a T fit on the other folds only, as
``service_tasks.calibration`` does on publish). Run it on an arm built without scaling.

    python benchmarks/calibration_offline.py /tmp/ab_work/A Car hpc_data digits > results/calibration_offline.md
"""

from __future__ import annotations

import glob
import sys

import numpy as np
from deltalake import DeltaTable
from obsrv.service_tasks import calibration as C


def logloss(p: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), y], 1e-15, 1.0))))


def rows(arm_dir: str, dataset: str) -> list[str]:
    schemas = [b for b in glob.glob(f"{arm_dir}/work/{dataset}/r0f0/obsrv/.obsrv/warehouse/*/*")
               if glob.glob(f"{b}/train_prepared_*")]
    if not schemas:
        raise SystemExit(f"calibration_offline: no prepared table for {dataset} under {arm_dir}/work")
    base = schemas[0]
    prepared = DeltaTable(glob.glob(f"{base}/train_prepared_*")[0]).to_pandas().set_index("obsrv_row_id")
    labels = prepared["target"].astype(str)
    out = []
    for table in sorted(glob.glob(f"{base}/train_oof_*")):
        df = DeltaTable(table).to_pandas()
        pcols = [c for c in df.columns if c.startswith("proba_")]
        index = {c[len("proba_"):]: i for i, c in enumerate(pcols)}
        for model, g in df.groupby("model"):
            p = g[pcols].to_numpy(float)
            y = labels.loc[g["row_id"]].map(index).to_numpy().astype(np.int64)
            scaled = C.nested_scaled_oof(p, y, g["fold"].to_numpy())
            out.append(f"| {dataset} | {model} | {logloss(p, y):.4f} | {logloss(scaled, y):.4f} | "
                       f"{C.fit_temperature(p, y):.3f} |")
    return out


def main(argv: list[str]) -> int:
    arm_dir, datasets = argv[0], argv[1:]
    print("| dataset | model | OOF log-loss as published | nested temperature-scaled | T on all OOF rows |")
    print("|---|---|---|---|---|")
    for ds in datasets:
        print("\n".join(rows(arm_dir, ds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

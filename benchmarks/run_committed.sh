#!/usr/bin/env bash
# The reduced runs behind the committed results in benchmarks/results/ (~35 minutes on 2 cores):
# the scale points, then one outer split per dataset of the quality benchmark; the second
# command re-runs (with --resume) only methods that failed. Add --max-splits 2 (or more) with
# --resume to extend the same CSV. Full-protocol commands: benchmarks/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DATASETS=credit_data,hpc_data,syn_route_segment
REDUCTION="3 of the 8 datasets (binary real, multiclass real, synthetic routing), one outer split each (the first of the 5x2 protocol), and a 30 s budget instead of 60 s, to fit the ~35 minutes this session had on a 2-core machine."
python benchmarks/scale.py --sizes 10000,20000 --stage-budget 5 --jobs 1 \
  --not-run "100,000 and 1,000,000 rows: the base stages' default configs (1,000-tree boosters, 200-tree forests, 5 folds) take tens of minutes to hours there on 2 cores, more than this session had; run them with --sizes 100000,1000000"
python benchmarks/quality.py --datasets $DATASETS --max-splits 1 --budget 30 --reduction "$REDUCTION"
python benchmarks/quality.py --datasets $DATASETS --max-splits 1 --budget 30 --resume --reduction "$REDUCTION"

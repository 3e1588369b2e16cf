#!/usr/bin/env bash
# The runs behind the committed results in benchmarks/results/, on a 2-core machine with nothing
# else running. Each report records the exact command chain and machine(s) of its own run
# (quality_meta.json keeps every --resume sitting); these commands reproduce them.
set -euo pipefail
cd "$(dirname "$0")/.."
# scale: 10k / 100k / 1M rows, default configs trained to the end (~50 min, 41 of them at 1M)
python benchmarks/scale.py --sizes 10000,100000,1000000 --jobs 1
# quality: the full 5x2 protocol, 60 s per method and split (~6-7 min a split, ~10 h in all). The
# committed CSV holds all 80 dataset-splits, built sitting by sitting with --resume and
# --stop-after (the report lists every sitting's command); from scratch, repeat this until done:
python benchmarks/quality.py --budget 60 --max-splits 10 --resume --stop-after 6000
# quality at 300 s, split 10 of hpc_data only, beside that split's 60 s rows (~23 min)
python benchmarks/quality.py --budget 300 --datasets hpc_data --max-splits 10 --splits 10
# holdout A/B: obsrv with context.holdout 0.2 against 0 on the first outer split of every dataset (~30 min)
python benchmarks/holdout_ab.py --max-splits 1
# code A/B: booster pacing and the route-family skip (a9445e4) against the code before them (402d17a) (~31 min)
python benchmarks/code_ab.py --a 402d17a --b a9445e4
# code A/B: CatBoost paced between fits (728f463) against the code before it (345ea76), the two
# multiclass sets whose CatBoost fits the 60 s plan cuts short, first 3 outer splits (~27 min)
python benchmarks/code_ab.py --a 345ea76 --b 728f463 --datasets Car,hpc_data --max-splits 3 --stem code_ab_catboost
# code A/B: stack_blend re-fits bounded by their fold models' time limits (c293189) against the
# code before (d9d2d78), first outer split of Car and hpc_data (~11 min)
python benchmarks/code_ab.py --a d9d2d78 --b c293189 --datasets Car,hpc_data --stem code_ab_blend_refit
# code A/B: context.folds auto (e04557c) against 5 folds (4cc4468), first split of all 13 sets (~29 min)
python benchmarks/code_ab.py --a 4cc4468 --b e04557c --datasets credit_data,wa_churn,lending_club,hpc_data,HMDA,Car,syn_route_cluster,syn_route_segment,ames,concrete,caravan,cells,digits --stem code_ab_folds_auto
# code A/B: booster re-fit after early stopping (fd928ee, reverted) against bcce2a4 (~29 min)
python benchmarks/code_ab.py --a bcce2a4 --b fd928ee --datasets credit_data,wa_churn,lending_club,hpc_data,HMDA,Car,syn_route_cluster,syn_route_segment,ames,concrete,caravan,cells,digits --stem code_ab_booster_refit
# code A/B: boosters up to 10,000 rounds (a22969f) against c79e76d (~30 min)
python benchmarks/code_ab.py --a c79e76d --b a22969f --datasets credit_data,wa_churn,lending_club,hpc_data,HMDA,Car,syn_route_cluster,syn_route_segment,ames,concrete,caravan,cells,digits --stem code_ab_booster_rounds
python benchmarks/code_ab.py --a 1d9e988 --b 7ce308c --datasets credit_data,wa_churn,lending_club,hpc_data,HMDA,Car,syn_route_cluster,syn_route_segment,ames,concrete,caravan,cells,digits --max-splits 1 --stem code_ab_stack_mix --report obsrv:stack_top_any
python benchmarks/guard_mix_cost.py
# the second stack level on the pools of arm B above (its work dir: add --work-dir /tmp/ab_rounds/work to that code_ab.py line)
python benchmarks/level_two.py --work-dir /tmp/ab_mix/B/work

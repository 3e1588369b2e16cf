#!/usr/bin/env bash
# Creates benchmarks/.venv-peers with the AutoML peers (FLAML, AutoGluon-Tabular without torch,
# H2O). They live in their own virtualenv because their pins may downgrade pandas/scikit-learn,
# and the main environment must stay as obsrv's users have it. Idempotent; ~2 minutes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-peers"
py="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# each line of requirements-peers.txt separately: one peer that fails to install must not take the
# others down
grep -vE '^[[:space:]]*(#|$)' "$here/requirements-peers.txt" | while read -r line; do
  # shellcheck disable=SC2086  # a line may name several requirements
  "$venv/bin/python" -m pip install -q $line || echo "FAILED: $line" >&2
done
"$venv/bin/python" -m pip list 2>/dev/null | grep -iE '^(flaml|autogluon[.a-z]*|h2o|scikit-learn|pandas|numpy|pyarrow|lightgbm|xgboost|catboost) ' || true

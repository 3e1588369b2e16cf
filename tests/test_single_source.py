"""One source of truth: the task side reads its lists of families, metrics and problems from the
spec (`compiler/spec.py`), it does not copy them. Identity, not equality: a copy that agrees today
is what this forbids."""

from __future__ import annotations

from typing import get_args, get_type_hints

from obsrv.compiler import spec
from obsrv.service_tasks import contract, metrics, zoo
from obsrv.service_tasks.ensembles import base, stacking


def test_the_spec_tuples_are_read_from_its_literal_types() -> None:
    assert spec.PROBLEMS == get_args(spec.Problem) == ("classification", "regression")
    assert spec.CLASSIFICATION_METRICS == get_args(spec.ClassificationMetric)
    assert spec.REGRESSION_METRICS == get_args(spec.RegressionMetric)
    assert spec.ACCELERATORS == get_args(spec.Accelerator)
    assert spec.BOOST_ALGORITHMS == get_args(spec.BoostAlgorithm)
    assert spec.META_LEARNERS == get_args(spec.MetaLearner)


def test_the_task_side_binds_the_spec_objects_themselves() -> None:
    assert zoo.FAMILIES is spec.MODEL_FAMILIES
    assert zoo.GPU_CAPABLE is spec.GPU_CAPABLE_FAMILIES
    assert metrics.CLASSIFICATION is spec.CLASSIFICATION_METRICS
    assert metrics.REGRESSION is spec.REGRESSION_METRICS
    assert stacking.MetaLearnerName is spec.MetaLearner
    for module in (zoo, metrics, base):
        assert module.Problem is spec.Problem, module.__name__
    assert get_type_hints(contract.PreparedData)["problem"] is spec.Problem

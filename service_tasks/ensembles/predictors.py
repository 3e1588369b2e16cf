"""Servable ensemble predictors: members' fitted predictors composed with a fitted combiner.

They hold only picklable state (fitted dataclasses, numpy arrays, the members' own predictors), so
MLflow's pyfunc wrapper can pickle them, and they predict from raw feature frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from obsrv.service_tasks.zoo import served

from .base import Combiner


@dataclass
class CombinedPredictor:
    """``combiner.predict(stack of member predictions, passthrough input)``.

    Parameters
    ----------
    members : list
        Objects with ``predict_matrix(X) -> (n, K)`` in the order the combiner was fit on.
    combiner : Combiner
        Fitted on OOF predictions of those members.
    passthrough : bool
        Hand the raw feature frame to the combiner as its passthrough input (``passthrough: true``
        stacks: a ``PassthroughCombiner`` encodes it with the encoder it fit with itself).
    member_names : list[str]
        For people reading the pickled model.
    """

    members: list[Any]
    combiner: Combiner
    passthrough: bool = False
    member_names: list[str] = field(default_factory=list)

    def predict_matrix(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_inputs(served.Inputs(X))

    def predict_inputs(self, inputs: served.Inputs) -> np.ndarray:
        """From one call's converted inputs, shared by every member (``served.Inputs``: each raw
        column converted once, not once per member and fold model)."""
        P = np.stack([served.predict_shared(m, inputs) for m in self.members])
        return self.combiner.predict(P, inputs.X if self.passthrough else None)

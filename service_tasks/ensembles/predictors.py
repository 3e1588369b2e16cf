"""Servable ensemble predictors: members' fitted predictors composed with a fitted combiner.

They hold only picklable state (fitted dataclasses, numpy arrays, the members' own predictors), so
MLflow's pyfunc wrapper can pickle them, and they predict from raw feature frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

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
        P = np.stack([np.asarray(m.predict_matrix(X), dtype=np.float64) for m in self.members])
        return self.combiner.predict(P, X if self.passthrough else None)

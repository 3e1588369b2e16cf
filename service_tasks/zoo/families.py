"""The zoo's families and problems: which families exist and which have a GPU mode.

Read from the spec (``compiler/spec.py``), the one list both the compiler and the tasks use. Plain
values are bound here, never the spec module: fitted models pickle zoo code by value, and a
module reference would make a served model import obsrv."""

from __future__ import annotations

from obsrv.compiler.spec import GPU_CAPABLE_FAMILIES as GPU_CAPABLE
from obsrv.compiler.spec import MODEL_FAMILIES as FAMILIES
from obsrv.compiler.spec import Problem

__all__ = ["FAMILIES", "GPU_CAPABLE", "Problem"]

"""The 11 user task types (routing, stacking, boosting, voting ensembles).

Pure algorithms live in one module per family (``greedy``, ``stacking``, ``voting``, ``routing``,
``boosting``) over ``base``; ``tasks`` holds the thin TaskContext wrappers. The stage entry point is
``run_task(ctx)``, which dispatches on ``ctx.request.stage``.
"""

from .tasks import TASKS, run_task

__all__ = ["TASKS", "run_task"]

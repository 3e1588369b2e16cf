"""The 11 user task types (routing, stacking, boosting, voting ensembles).

Pure algorithms live in one module per family (``greedy``, ``stacking``, ``voting``, ``routing``,
``boosting``) over ``base``; the thin TaskContext wrappers are one module per family too
(``stack_tasks``, ``vote_tasks``, ``boost_task``, ``route_tasks``, sharing ``job``), and ``tasks``
maps each task type to its wrapper. The stage entry point is
``run_task(ctx)``, which dispatches on ``ctx.request.stage``.
"""

from .tasks import TASKS, run_task

__all__ = ["TASKS", "run_task"]

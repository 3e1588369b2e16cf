"""Mermaid flowchart of a compiled job (`obsrv graph SPEC`).

The base models are drawn as one subgraph: every user task and evaluate depend on all of them (see
ARCHITECTURE.md), and eight parallel edges per task would bury the user's own `depends_on` edges.
GPU tasks get their own style so the CPU/GPU split is visible at a glance.
"""

from __future__ import annotations

from obsrv.compiler.plan import JobPlan, TaskPlan

_BASE_GROUP = "base_models"


def _label(task: TaskPlan) -> str:
    stage = "" if task.stage == task.key else f"{task.stage} · "
    return f'{task.key}["{task.key}<br/>{stage}{task.environment}"]'


def mermaid(plan: JobPlan) -> str:
    base = [t for t in plan.tasks if t.stage == "base"]
    base_keys = {t.key for t in base}
    lines = ["flowchart LR"]
    for task in plan.tasks:
        if task.stage != "base":
            lines.append(f"    {_label(task)}")
    lines.append(f'    subgraph {_BASE_GROUP}["base models, in parallel"]')
    lines.extend(f"        {_label(task)}" for task in base)
    lines.append("    end")
    lines.append(f"    prepare --> {_BASE_GROUP}")
    for task in plan.tasks:
        if task.stage in ("base", "prepare"):
            continue
        own = [d for d in task.depends_on if d not in base_keys]
        if base_keys and base_keys <= set(task.depends_on):
            lines.append(f"    {_BASE_GROUP} --> {task.key}")
        lines.extend(f"    {dep} --> {task.key}" for dep in own)
    gpu = [t.key for t in plan.tasks if t.environment == "gpu"]
    if gpu:
        lines.append("    classDef gpu fill:#e8f5e9,stroke:#2e7d32,stroke-width:2px")
        lines.append(f"    class {','.join(gpu)} gpu")
    return "\n".join(lines) + "\n"

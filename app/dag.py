"""The compiled job as a Graphviz DOT graph (the app's Job page draws it with st.graphviz_chart).

Drawn from the compiled plan (`CompileResult.plan`'s task entries and the emitted job's
`depends_on`), so it is exactly what deploys: the implicit stages (prepare, base_<family>,
evaluate, cleanup), the user's tasks, CPU or GPU, and every dependency. States, when given, colour
the nodes (the Watch page).
"""

from __future__ import annotations

from typing import Any

IMPLICIT_STAGES = ("prepare", "base", "evaluate", "cleanup")
_FILL = {"pending": "#eeeeee", "running": "#bbdefb", "succeeded": "#c8e6c9", "failed": "#ffcdd2", "skipped": "#fff9c4"}


def _quote(text: str) -> str:
    # Labels carry DOT's own `\n` line breaks, so backslashes are left as they are; task keys are
    # identifiers (the compiler's rule), so only a quote could need escaping.
    return '"' + text.replace('"', '\\"') + '"'


def task_stage(task: dict[str, Any]) -> str:
    argv = task.get("python_wheel_task", {}).get("parameters")
    if argv and "--stage" in argv[:-1]:
        return str(argv[argv.index("--stage") + 1])
    return str(task.get("notebook_task", {}).get("base_parameters", {}).get("stage", task["task_key"]))


def job_dot(job: dict[str, Any], states: dict[str, str] | None = None) -> str:
    """DOT for the emitted `resources.jobs.<key>` mapping; byte-identical for the same job."""
    lines = ["digraph job {", "  rankdir=LR;", '  node [shape=box, style="rounded,filled", fontname="Helvetica"];']
    base = [t for t in job["tasks"] if task_stage(t) == "base"]
    for task in job["tasks"]:
        key, stage = task["task_key"], task_stage(task)
        device = str(task.get("environment_key", "cpu")).upper()
        kind = "implicit stage" if stage in IMPLICIT_STAGES else "your task"
        label = f"{key}\\n{stage if stage != key else kind} · {device}"
        fill = _FILL.get((states or {}).get(key, ""), "#e8f5e9" if device == "GPU" else "#ffffff")
        border = ', penwidth=2, color="#2e7d32"' if device == "GPU" else ""
        shape = "" if stage not in IMPLICIT_STAGES else ", shape=box"
        state = f"\\n[{states[key]}]" if states and key in states else ""
        lines.append(f"  {_quote(key)} [label={_quote(label + state)}, fillcolor={_quote(fill)}{border}{shape}];")
    if base:
        lines.append("  subgraph cluster_base { label=\"base models, in parallel\"; style=dashed; "
                     + " ".join(_quote(t["task_key"]) + ";" for t in base) + " }")
    for task in job["tasks"]:
        for dep in task.get("depends_on", []):
            style = " [style=dashed]" if task.get("run_if") == "ALL_DONE" else ""
            lines.append(f"  {_quote(dep['task_key'])} -> {_quote(task['task_key'])}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"

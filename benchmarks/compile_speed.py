"""How fast is `obsrv compile`? Prints a small table of measured wall times.

    python benchmarks/compile_speed.py            # 15 runs per row
    python benchmarks/compile_speed.py --runs 3   # quicker
    python benchmarks/compile_speed.py --smoke    # one run per row (CI smoke mode)
    python benchmarks/compile_speed.py --out-dir benchmarks/results   # also write compile_speed.md

Rows:
- `obsrv compile` on the seed example and on a generated 200-task spec, each run as a fresh
  process (subprocess, writing into a fresh temporary folder): median and minimum wall time of N
  runs, and the median CPU time (user+sys) of the process, which a busy machine disturbs less;
- the same with `--verify` (the databricks-bundles self-check, on by default with `--check`);
- `python -c pass` (interpreter start-up, the floor under every row) and the import time of
  `obsrv.compiler.cli` plus what a compile imports, from `python -X importtime`.

The console script next to this interpreter is timed directly: a version manager's shim (pyenv)
in front of it adds its own start-up, which is not obsrv's.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "examples" / "credit_risk.yaml"
TYPES = (
    "route_cluster", "route_feature", "stack_top_any", "stack_top_alg", "stack_blend",
    "stack_classwise", "boost", "vote_top_alg", "vote_mix", "vote_weight",
)  # route_external is left out: it needs a routing table, which adds nothing to the timing


def obsrv_command() -> list[str]:
    script = Path(sys.executable).with_name("obsrv")
    return [str(script)] if script.exists() else [sys.executable, "-m", "obsrv.compiler.cli"]


def generated_spec(n_tasks: int) -> str:
    """A valid spec with `n_tasks` tasks; each depends on up to two earlier ones."""
    lines = [
        "obsrv:",
        "  context:",
        f"    name: generated_{n_tasks}",
        "    compute: {serverless: [CPU, GPU]}",
        "    timeout: 2h",
        "    metric: {classification: [auc, f1]}",
        "    source: {catalog: main, schema: credit_risk, table: training_data, target: default_label}",
        "  job:",
    ]
    for i in range(n_tasks):
        kind = TYPES[i % len(TYPES)]
        lines.append(f"    - id: t{i}_{kind}")
        lines.append(f"      task: {kind}")
        if kind == "route_cluster":
            lines.append("      route: {cluster: {kmeans: {n_clusters: 3}}}")
        elif kind == "route_feature":
            lines.append("      route: {feature: {column: home}}")
        deps = [j for j in (i - 1, i - 7) if j >= 0]
        if deps:
            lines.append("      depends_on:")
            lines += [f"        - task: t{j}_{TYPES[j % len(TYPES)]}" for j in deps]
    return "\n".join(lines) + "\n"


Row = tuple[str, float, float, float]  # label, median wall, min wall, median CPU (user+sys)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _measure(label: str, make_command, runs: int, env: dict[str, str] | None = None) -> Row:
    """Wall time and the child's CPU time; CPU time moves less when other work shares the
    machine, so it is the figure to compare on a busy host."""
    walls, cpus = [], []
    for i in range(runs):
        command = make_command(i)
        cpu_before, started = _cpu_seconds(), time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=REPO, env=env)
        walls.append(time.perf_counter() - started)
        cpus.append(_cpu_seconds() - cpu_before)
    return label, statistics.median(walls), min(walls), statistics.median(cpus)


def import_time(statement: str, runs: int) -> float:
    """Median import time of the `obsrv.compiler.*` modules `statement` imports, from
    `python -X importtime` (their top-level cumulative figures; interpreter start-up excluded)."""
    totals = []
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", statement], capture_output=True, text=True, check=True, cwd=REPO
        )
        # Lines: "import time: self | cumulative | name"; top-level imports have no indentation.
        top = [
            int(m.group(1))
            for m in re.finditer(r"^import time:\s+\d+ \|\s+(\d+) \| (obsrv\.compiler\S*)$", result.stderr, re.MULTILINE)
        ]
        totals.append(sum(top) / 1e6)
    return statistics.median(totals)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="runs per row (default 15)")
    parser.add_argument("--smoke", action="store_true", help="one run per row")
    parser.add_argument("--out-dir", type=Path, help="also write compile_speed[_smoke].md there")
    args = parser.parse_args()
    runs = 1 if args.smoke else max(1, args.runs)
    obsrv = obsrv_command()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "generated_200.yaml"
        big.write_text(generated_spec(200))

        def compile_(spec: Path, *extra: str):  # a fresh output folder per run: every run writes
            return lambda i: [*obsrv, "compile", str(spec), "-o", f"{tmp}/out{len(rows)}_{i}", *extra]

        rows.append(_measure("python -c pass (interpreter start-up)", lambda i: [sys.executable, "-c", "pass"], runs))
        rows.append(_measure("obsrv --version", lambda i: [*obsrv, "--version"], runs))
        rows.append(_measure("obsrv compile examples/credit_risk.yaml", compile_(SEED), runs))
        rows.append(_measure("  ... --verify", compile_(SEED, "--verify"), runs))
        rows.append(_measure("obsrv compile <generated 200 tasks>", compile_(big), runs))
        rows.append(_measure("  ... --verify", compile_(big, "--verify"), runs))
        # With PYTHONDONTWRITEBYTECODE set (as in some dev containers) every run compiles obsrv's
        # sources again; an installed obsrv has its .pyc files. This row shows that case: bytecode
        # cached in a private prefix, warmed by one uncounted run.
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = f"{tmp}/pycache"
        subprocess.run(compile_(SEED)(-1), check=True, stdout=subprocess.DEVNULL, cwd=REPO, env=cached)
        rows.append(_measure("obsrv compile examples/credit_risk.yaml, .pyc cached", compile_(SEED), runs, cached))
    cli_imports = import_time("import obsrv.compiler.cli", runs)
    compile_imports = import_time(
        "import obsrv.compiler.cli, obsrv.compiler.api, obsrv.compiler.checks, obsrv.compiler.emit", runs
    )
    import_labels = ["import obsrv.compiler.cli (importtime)", "  ... + api, checks, emit (the compile path)"]
    width = max(len(label) for label in [*(r[0] for r in rows), *import_labels]) + 2
    lines = [
        f"obsrv compile speed: {runs} run(s) per row, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}, Python {sys.version.split()[0]}, "
        f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}",
        f"command: {' '.join(obsrv)}",
        f"{'':{width}}{'median':>10}{'min':>10}{'cpu':>10}",
    ]
    lines += [f"{label:{width}}{median * 1000:>8.0f}ms{best * 1000:>8.0f}ms{cpu * 1000:>8.0f}ms" for label, median, best, cpu in rows]
    lines.append(f"{import_labels[0]:{width}}{cli_imports * 1000:>8.0f}ms")
    lines.append(f"{import_labels[1]:{width}}{compile_imports * 1000:>8.0f}ms")
    table = "\n".join(lines) + "\n"
    print(table, end="")
    if args.out_dir is not None:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        name = "compile_speed_smoke.md" if args.smoke else "compile_speed.md"
        when = time.strftime("%Y-%m-%d %H:%M %Z")
        command = " ".join(["python", "benchmarks/compile_speed.py", *sys.argv[1:]])
        (args.out_dir / name).write_text(f"# obsrv compile speed\n\n{when}, `{command}`\n\n```\n{table}```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

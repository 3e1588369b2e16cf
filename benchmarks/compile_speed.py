"""How fast is `obsrv compile`? Prints a small table of measured wall times.

    python benchmarks/compile_speed.py            # 15 runs per row
    python benchmarks/compile_speed.py --runs 3   # quicker
    python benchmarks/compile_speed.py --smoke    # one run per row (CI smoke mode)
    python benchmarks/compile_speed.py --out-dir benchmarks/results   # also write compile_speed.md
    python benchmarks/compile_speed.py --against ../obsrv-old   # this checkout and another, side by side

Rows:
- `obsrv compile` on the seed example and on a generated 200-task spec, each run as a fresh
  process (subprocess, writing into a fresh temporary folder): median and minimum wall time of N
  runs, and the median CPU time (user+sys) of the process, which a busy machine disturbs less;
- the same with `--verify` (the databricks-bundles self-check, on by default with `--check`);
- `python -c pass` (interpreter start-up, the floor under every row) and the import time of
  `obsrv.compiler.cli` plus what a compile imports, from `python -X importtime`.

`--against DIR` times a second checkout (another commit) in the same run: its own interpreter
(`DIR/.venv/bin/python`, or `--against-python`) with obsrv installed editable from DIR, its own
examples, the runs of the two interleaved (ABAB..., the order flipped every run) so that load
from other work falls on both alike. Columns then come in pairs, the other checkout first.

The console script next to each interpreter is timed directly: a version manager's shim (pyenv)
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TYPES = (
    "route_cluster", "route_feature", "stack_top_any", "stack_top_alg", "stack_blend",
    "stack_classwise", "boost", "vote_top_alg", "vote_mix", "vote_weight",
)  # route_external is left out: it needs a routing table, which adds nothing to the timing


@dataclass(frozen=True)
class Tree:
    """One checkout to time: its folder, the interpreter with obsrv installed from it, a label."""

    label: str
    repo: Path
    python: Path

    @property
    def obsrv(self) -> list[str]:
        script = self.python.with_name("obsrv")
        return [str(script)] if script.exists() else [str(self.python), "-m", "obsrv.compiler.cli"]

    def commit(self) -> str:
        result = subprocess.run(["git", "-C", str(self.repo), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", str(self.repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return (result.stdout.strip()[:72] or "(not a git checkout)") + (" (+ uncommitted changes)" if dirty else "")


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


@dataclass(frozen=True)
class Figures:
    median: float  # wall, seconds
    best: float  # minimum wall
    cpu: float  # median CPU time (user+sys) of the process


Command = Callable[[Tree, int], list[str]]  # (tree, run index) -> argv


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _measure(trees: list[Tree], make_command: Command, runs: int, env: dict[str, str] | None = None) -> list[Figures]:
    """Wall time and the child's CPU time per tree, the trees' runs interleaved; CPU time moves
    less when other work shares the machine, so it is the figure to compare on a busy host."""
    walls: list[list[float]] = [[] for _ in trees]
    cpus: list[list[float]] = [[] for _ in trees]
    for i in range(runs):
        order = list(range(len(trees))) if i % 2 == 0 else list(reversed(range(len(trees))))
        for k in order:
            command = make_command(trees[k], i)
            cpu_before, started = _cpu_seconds(), time.perf_counter()
            result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                    cwd=trees[k].repo, env=env)
            if result.returncode != 0:  # a compile that fails times nothing worth reporting
                raise SystemExit(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr}")
            walls[k].append(time.perf_counter() - started)
            cpus[k].append(_cpu_seconds() - cpu_before)
    return [Figures(statistics.median(w), min(w), statistics.median(c)) for w, c in zip(walls, cpus)]


def import_time(tree: Tree, statement: str, runs: int) -> float:
    """Median import time of the `obsrv.compiler.*` modules `statement` imports, from
    `python -X importtime` (their top-level cumulative figures; interpreter start-up excluded)."""
    totals = []
    for _ in range(runs):
        result = subprocess.run(
            [str(tree.python), "-X", "importtime", "-c", statement], capture_output=True, text=True, check=True, cwd=tree.repo
        )
        # Lines: "import time: self | cumulative | name"; top-level imports have no indentation.
        top = [
            int(m.group(1))
            for m in re.finditer(r"^import time:\s+\d+ \|\s+(\d+) \| (obsrv\.compiler\S*)$", result.stderr, re.MULTILINE)
        ]
        totals.append(sum(top) / 1e6)
    return statistics.median(totals)


def _table(trees: list[Tree], rows: list[tuple[str, list[Figures]]], imports: list[tuple[str, list[float]]]) -> list[str]:
    """One row per measurement; per figure (median, min, cpu) a column per tree, labelled beneath
    when there is more than one tree."""
    width = max(len(label) for label, _ in [*rows, *imports]) + 2
    col = max(10, *(len(t.label) + 2 for t in trees))
    group = col * len(trees)
    lines = [f"{'':{width}}" + "".join(f"{name:>{group}}" for name in ("median", "min", "cpu"))]
    if len(trees) > 1:
        lines.append(f"{'':{width}}" + "".join(f"{t.label:>{col}}" for t in trees) * 3)

    def cell(seconds: float) -> str:
        return f"{seconds * 1000:>{col - 2}.0f}ms"

    for label, figures in rows:
        lines.append(f"{label:{width}}" + "".join(
            "".join(cell(value(f)) for f in figures)
            for value in (lambda f: f.median, lambda f: f.best, lambda f: f.cpu)))
    for label, seconds in imports:
        lines.append(f"{label:{width}}" + "".join(cell(s) for s in seconds))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="runs per row (default 15)")
    parser.add_argument("--smoke", action="store_true", help="one run per row")
    parser.add_argument("--out-dir", type=Path, help="also write compile_speed[_smoke].md there")
    parser.add_argument("--against", type=Path, metavar="DIR", help="another obsrv checkout, timed side by side")
    parser.add_argument("--against-python", type=Path, metavar="PYTHON",
                        help="the interpreter with obsrv installed from --against (default DIR/.venv/bin/python)")
    parser.add_argument("--label", default="here", help="this checkout's column label with --against (default: here)")
    parser.add_argument("--against-label", default="there", help="the other checkout's column label (default: there)")
    args = parser.parse_args()
    runs = 1 if args.smoke else max(1, args.runs)
    trees = [Tree(args.label, REPO, Path(sys.executable))]
    if args.against is not None:
        other = args.against.resolve()
        python = args.against_python or other / ".venv" / "bin" / "python"
        if not python.exists():
            parser.error(f"no interpreter at {python}: make a venv there with obsrv installed editable, or pass --against-python")
        trees.insert(0, Tree(args.against_label, other, python))
    rows: list[tuple[str, list[Figures]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "generated_200.yaml"
        big.write_text(generated_spec(200))

        def compile_(spec: Path | None, *extra: str) -> Command:  # a fresh output folder per run: every run writes
            n = len(rows)
            return lambda t, i: [*t.obsrv, "compile", str(spec or t.repo / "examples" / "credit_risk.yaml"),
                                 "-o", f"{tmp}/out{n}_{t.label}_{i}", *extra]

        rows.append(("python -c pass (interpreter start-up)", _measure(trees, lambda t, i: [str(t.python), "-c", "pass"], runs)))
        rows.append(("obsrv --version", _measure(trees, lambda t, i: [*t.obsrv, "--version"], runs)))
        rows.append(("obsrv compile examples/credit_risk.yaml", _measure(trees, compile_(None), runs)))
        rows.append(("  ... --verify", _measure(trees, compile_(None, "--verify"), runs)))
        rows.append(("obsrv compile <generated 200 tasks>", _measure(trees, compile_(big), runs)))
        rows.append(("  ... --verify", _measure(trees, compile_(big, "--verify"), runs)))
        # With PYTHONDONTWRITEBYTECODE set (as in some dev containers) every run compiles obsrv's
        # sources again; an installed obsrv has its .pyc files. This row shows that case: bytecode
        # cached in a private prefix, warmed by one uncounted run.
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = f"{tmp}/pycache"
        seed_cached = compile_(None)
        for tree in trees:
            subprocess.run(seed_cached(tree, -1), check=True, capture_output=True, cwd=tree.repo, env=cached)
        rows.append(("obsrv compile examples/credit_risk.yaml, .pyc cached", _measure(trees, seed_cached, runs, cached)))
    imports = [
        ("import obsrv.compiler.cli (importtime)", [import_time(t, "import obsrv.compiler.cli", runs) for t in trees]),
        ("  ... + api, checks, emit (the compile path)", [import_time(
            t, "import obsrv.compiler.cli, obsrv.compiler.api, obsrv.compiler.checks, obsrv.compiler.emit", runs)
            for t in trees]),
    ]
    lines = [
        f"obsrv compile speed: {runs} run(s) per row, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}, Python {sys.version.split()[0]}, "
        f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}",
        *(f"{t.label}: {' '.join(t.obsrv)} at {t.commit()}" for t in trees),
        *_table(trees, rows, imports),
    ]
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

"""Prepare on Spark at warehouse scale: wall time and peak memory at 1M and 10M source rows.

Each measurement runs in its own process (its own JVM), so one size's peaks cannot leak into the
next. The source is a synthetic parquet table (an id, 8 floats, 2 string categoricals, an int, a
bool, a timestamp, a 3-class label with 0.5 % missing) generated once per size under --data-dir and
registered as an external table. `prepare` is the whole stage (`run_prepare`: sample, checks,
holdout, folds, writing the prepared and meta tables) through `SparkTableStore`:

* `spark`: the Spark path (`read_sample`: needed columns only, sampled in Spark, sample collected);
* `baseline` (optional, `--baseline-rows`): the read-then-sample path prepare took before, the whole
  table collected with `toPandas` and sampled in pandas.

Peak memory: the Python driver process (`getrusage` ru_maxrss over its lifetime, and its VmHWM
reset just before prepare, so the figure is prepare's own) and the JVM (its VmHWM, reset the same
way, and the peak used heap summed over the heap pools, from the JVM's MemoryPoolMXBeans).

    python benchmarks/prepare_spark.py --rows 1000000,10000000 --out benchmarks/results/prepare_spark.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

ROWS_PER_FILE = 1_000_000
TABLE = "spark_catalog.default.prepare_src"


# ------------------------------------------------------------------------------------ the child


def _session(driver_memory: str, workdir: Path) -> Any:
    from pyspark.sql import SparkSession

    return (
        SparkSession.builder.master("local[*]")
        .appName("obsrv-prepare-bench")
        .config("spark.driver.memory", driver_memory)
        .config("spark.sql.warehouse.dir", str(workdir / "warehouse"))
        .config("spark.local.dir", str(workdir / "tmp"))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )


def generate(rows: int, path: Path, driver_memory: str, workdir: Path) -> None:
    from pyspark.sql import functions as F

    spark = _session(driver_memory, workdir)
    u = F.rand(11)
    label = F.when(F.rand(12) < 0.005, F.lit(None)).when(u < 0.05, 2).when(u < 0.30, 1).otherwise(0)
    cols = [F.col("id").alias("customer_id")]
    cols += [(F.randn(20 + i) if i % 2 else F.rand(20 + i)).alias(f"x{i}") for i in range(8)]
    cols += [
        F.concat(F.lit("region_"), (F.xxhash64("id") % 5).cast("string")).alias("region"),
        F.concat(F.lit("product_"), (F.xxhash64("id", F.lit(1)) % 20).cast("string")).alias("product"),
        (F.col("id") % 17).cast("int").alias("tenure"),
        (F.rand(30) < 0.3).alias("is_member"),
        F.timestamp_seconds(F.lit(1_700_000_000) + F.col("id")).alias("signed_up_at"),
        label.alias("default_label"),
    ]
    parts = max(1, rows // ROWS_PER_FILE)
    spark.range(rows, numPartitions=parts).select(*cols).write.mode("overwrite").parquet(str(path))
    spark.stop()


def _status_kb(pid: int | str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def _reset_peak(pid: int | str) -> bool:
    """Reset the process's VmHWM (Linux: writing 5 to clear_refs), so the next peak is prepare's."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _jvm_pid(spark: Any) -> int | None:
    """The local-mode JVM: pyspark's gateway process (spark-submit execs java in place)."""
    proc = getattr(spark.sparkContext._gateway, "proc", None)
    if proc is None:
        return None
    pid = proc.pid
    if Path(f"/proc/{pid}/comm").read_text().strip() != "java":  # a wrapper: take its java child
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            if Path(f"/proc/{child}/comm").read_text().strip() == "java":
                return int(child)
    return pid


def _heap_pools(spark: Any) -> list[Any]:
    jvm = spark.sparkContext._jvm
    pools = jvm.java.lang.management.ManagementFactory.getMemoryPoolMXBeans()
    return [p for p in pools if str(p.getType().toString()) == "Heap memory"]


def measure(rows: int, path: Path, mode: str, sample_size: int, driver_memory: str, workdir: Path) -> dict[str, Any]:
    from obsrv.compiler.spec import Context
    from obsrv.service_tasks.io import SparkTableStore
    from obsrv.service_tasks.contract import TaskRequest
    from obsrv.service_tasks.stages.prepare import run_prepare

    shutil.rmtree(workdir, ignore_errors=True)  # a fresh warehouse: the catalog is in memory only
    spark = _session(driver_memory, workdir)
    spark.sql(f"DROP TABLE IF EXISTS {TABLE}")
    spark.sql(f"CREATE TABLE {TABLE} USING parquet LOCATION '{path}'")
    ctx = Context.model_validate({
        "name": "bench_job",
        "metric": {"classification": ["auc", "accuracy"]},
        "sample": {"size": sample_size, "method": "stratified"},
        "folds": 5,
        "holdout": 0.2,
        "source": {"catalog": "spark_catalog", "schema": "default", "table": "prepare_src", "target": "default_label"},
    })
    request = TaskRequest("prepare", "prepare", "bench", "spark_catalog", "default", ctx, {}, (), 60.0)
    read_s: list[float] = []
    collected: list[int] = []

    class Store(SparkTableStore):
        def read_sample(self, name: Any, context: Any, log: Any = print) -> Any:
            t0 = time.perf_counter()
            # baseline: the path prepare took before read_sample (the whole table into pandas)
            frame = self.read(name) if mode == "baseline" else super().read_sample(name, context, log)
            read_s.append(time.perf_counter() - t0)
            collected.append(len(frame))
            return frame

    jvm = _jvm_pid(spark)
    pools = _heap_pools(spark)
    for pool in pools:
        pool.resetPeakUsage()
    reset_ok = _reset_peak("self") and (jvm is None or _reset_peak(jvm))
    py_before = _status_kb("self", "VmRSS")
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    logs: list[str] = []
    error = None
    try:
        run_prepare(request, Store(spark), log=logs.append)
    except Exception as exc:  # a failure is a figure too (the baseline's OOM at 10M rows)
        # a Py4JJavaError's first line names only the call; the Java cause is further down
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [""]
        cause = next((ln for ln in lines if any(f in ln for f in _FATAL)), lines[0])
        error = f"{type(exc).__name__}: {cause[:300]}"
    total = time.perf_counter() - t0
    return {
        "rows": rows,
        "mode": mode,
        "driver_memory": driver_memory,
        "error": error,
        "prepare_s": round(total, 1),
        "read_sample_s": round(read_s[0], 1) if read_s else None,
        "rows_collected": collected[0] if collected else None,
        "py_rss_before_mb": round(py_before / 1024),
        "py_ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "py_prepare_peak_mb": round(_status_kb("self", "VmHWM") / 1024) if reset_ok else None,
        "jvm_peak_rss_mb": round(_status_kb(jvm, "VmHWM") / 1024) if jvm and reset_ok else None,
        "jvm_heap_peak_mb": round(sum(p.getPeakUsage().getUsed() for p in pools) / 2**20),
        "jvm_heap_max_mb": round(spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory() / 2**20),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "log": logs,
    }


# ----------------------------------------------------------------------------------- the parent


def _child(args: list[str], timeout: float) -> tuple[int, str, str]:
    cmd = [sys.executable, __file__, *args]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return res.returncode, res.stdout, res.stderr
    except subprocess.TimeoutExpired as exc:
        return 124, exc.stdout or "", f"timed out after {timeout:.0f} s"


_FATAL = ("OutOfMemoryError", "maxResultSize", "Java heap space", "timed out")


def _why(stderr: str, rc: int) -> str:
    """The line of a dead child's stderr that says why: an out-of-memory line before the last one."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    fatal = [ln for ln in lines if any(f in ln for f in _FATAL)]
    return (fatal or lines[-1:] or [f"exit {rc}"])[0][:200].replace("|", "/")


def _java_version() -> str:
    try:
        res = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30)
        return res.stderr.splitlines()[0] if res.stderr else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "not found"


def _fmt(v: Any) -> str:
    return "—" if v is None else f"{v:,}" if isinstance(v, int) else str(v)


def report(results: list[dict[str, Any]], args: argparse.Namespace, started: datetime, wall: float,
           uptime_before: str, uptime_after: str) -> str:
    from _common import git_revision, machine_label, versions

    v = versions(["pyspark", "pandas", "pyarrow", "numpy", "scikit-learn"])
    lines = [
        "# prepare on Spark: warehouse-scale sources",
        "",
        f"- **date**: {started:%Y-%m-%d %H:%M} UTC; **wall time** of the whole benchmark: {wall / 60:.1f} min; "
        f"git `{git_revision()}`",
        f"- **machine**: {machine_label()}; Python {sys.version.split()[0]}; {_java_version()}",
        "- **versions**: " + ", ".join(f"{k} {x}" for k, x in v.items()),
        f"- **command**: `python benchmarks/prepare_spark.py {' '.join(sys.argv[1:])}`",
        f"- **load** (`uptime`) before: `{uptime_before}`; after: `{uptime_after}`. The machine is shared "
        "with other jobs, so **the timings are under contention** (load averages above the core count "
        "mean the benchmark had less than the whole machine); memory figures are not affected.",
        f"- **setup**: Spark local mode (`local[*]`), `spark.driver.memory` as in the table (in local "
        "mode the executors run inside the driver JVM, so this bounds all of Spark); a synthetic parquet "
        "source (id, 8 floats, 2 string categoricals, an int, a bool, a timestamp, a 3-class label "
        f"70/25/5 % with 0.5 % missing); `sample.size: {args.sample_size:,}`, `method: stratified`, "
        "5 folds, 20 % holdout. `prepare` is the whole stage (`run_prepare`, both output tables written); "
        "`read` is the part that reads and samples the source. One process and JVM per row of the table.",
        "",
        "JVM heap peak is the sum of the heap pools' peaks (each pool peaks at its own time, so the sum "
        "can exceed the maximum heap); JVM peak RSS includes the JVM's off-heap memory. A `baseline` row "
        "whose result is an error is the read-then-sample path failing at that driver memory.",
        "",
        "| source rows | path | driver memory | prepare (s) | of which read (s) | rows collected | Python peak, lifetime (MB) | "
        "Python peak in prepare (MB) | JVM peak RSS in prepare (MB) | JVM heap peak / max (MB) | load 1-min before → after | result |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        heap = f"{_fmt(r.get('jvm_heap_peak_mb'))} / {_fmt(r.get('jvm_heap_max_mb'))}"
        load = (f"{r['load_before'][0]} → {r['load_after'][0]}" if r.get("load_before") else "—")
        lines.append(
            f"| {r['rows']:,} | {r['mode']} | {r.get('driver_memory', '—')} | {_fmt(r.get('prepare_s'))} | {_fmt(r.get('read_sample_s'))} | "
            f"{_fmt(r.get('rows_collected'))} | {_fmt(r.get('py_ru_maxrss_mb'))} | {_fmt(r.get('py_prepare_peak_mb'))} | "
            f"{_fmt(r.get('jvm_peak_rss_mb'))} | {heap} | {load} | {r.get('error') or 'ok'} |"
        )
    lines += ["", "## prepare's log (Spark path)", ""]
    for r in results:
        if r["mode"] == "spark" and r.get("log"):
            lines += [f"{r['rows']:,} rows:", "", "```", *r["log"], "```", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,10000000", help="source sizes, comma-separated")
    parser.add_argument("--baseline-rows", default="", help="sizes to also run the read-then-sample path at")
    parser.add_argument("--sample-size", type=int, default=50_000)
    parser.add_argument("--driver-memory", default="512m")
    parser.add_argument("--baseline-driver-memory", default="512m,4g",
                        help="driver memories to run the baseline with, comma-separated")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/obsrv_prepare_spark"))
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per child process")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    parser.add_argument("--child", nargs=3, metavar=("TASK", "ROWS", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:  # one generation or measurement, in this process
        task, rows, mode = args.child[0], int(args.child[1]), args.child[2]
        path = args.data_dir / f"source_{rows}"
        workdir = args.data_dir / f"work_{task}_{rows}_{mode}_{args.driver_memory}"
        if task == "generate":
            generate(rows, path, args.driver_memory, workdir)
        else:
            print("RESULT " + json.dumps(measure(rows, path, mode, args.sample_size, args.driver_memory, workdir)))
        return 0

    started, t0 = datetime.now(timezone.utc), time.perf_counter()
    uptime_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    shared = ["--data-dir", str(args.data_dir), "--sample-size", str(args.sample_size),
              "--driver-memory", args.driver_memory]
    sizes = [int(x) for x in args.rows.split(",") if x]
    baseline = [int(x) for x in args.baseline_rows.split(",") if x]
    results: list[dict[str, Any]] = []
    for rows in sorted(set(sizes) | set(baseline)):
        path = args.data_dir / f"source_{rows}"
        if not (path / "_SUCCESS").exists():
            print(f"generating {rows:,} rows -> {path}", flush=True)
            rc, _, err = _child([*shared, "--child", "generate", str(rows), "-"], args.timeout)
            if rc != 0:
                print(err[-3000:], file=sys.stderr)
                return 1
        runs = [("spark", args.driver_memory)] if rows in sizes else []
        if rows in baseline:
            runs += [("baseline", mem) for mem in args.baseline_driver_memory.split(",") if mem]
        for mode, memory in runs:
            child_args = [*shared, "--driver-memory", memory, "--child", "measure", str(rows), mode]
            rc, out, err = _child(child_args, args.timeout)
            found = [json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT ")]
            if found:
                result = found[0]
            else:  # the child died (the JVM out of memory, a timeout): its error is the figure
                result = {"rows": rows, "mode": mode, "driver_memory": memory, "error": f"exit {rc}: {_why(err, rc)}"}
            results.append(result)
            print(json.dumps({k: v for k, v in result.items() if k != "log"}), flush=True)
    uptime_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    text = report(results, args, started, time.perf_counter() - t0, uptime_before, uptime_after)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

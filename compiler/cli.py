"""`obsrv`: the user CLI.

Exit codes (CI relies on them):
  0  success
  1  a spec has errors, or `compile --check` found stale output
  2  usage error (bad arguments; argparse's own convention)
  3  internal error: a bug in obsrv, reported without a traceback unless OBSRV_DEBUG=1

Only argparse is imported at start-up; each command imports what it needs, so `obsrv --help`
is instant and `obsrv compile` never loads the runtime's heavy libraries.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
from collections.abc import Sequence
from typing import TextIO

EXIT_OK, EXIT_SPEC, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
DEFAULT_OUTPUT_DIR = "bundle_out"  # mirrors api.DEFAULT_OUTPUT_DIR without importing it

# emit.DEFAULT_GPU_RUNNER, repeated so that `obsrv --help` does not import the emitter (a test
# checks that the two agree).
DEFAULT_GPU_RUNNER = "notebook"
GPU_RUNNER_HELP = """\
how GPU tasks run (default: notebook). `notebook` emits GPU tasks as notebook_task running a
generated shim notebook (bundle_out/obsrv_task_notebook.py) that calls the obsrv-task entry
point with the same arguments a wheel task gets: the serverless-GPU shape Databricks documents.
`wheel` emits GPU tasks as python_wheel_task too (one task type everywhere), a shape Databricks
does not document for serverless GPU: opt in only after it ran on your workspace. CPU tasks
are wheel tasks either way."""

MAIN_EPILOG = """\
examples:
  obsrv validate examples/*.yaml             check specs, report every error at once
  obsrv compile examples/credit_risk.yaml    write bundle_out/credit_risk_ensemble.job.yml
  obsrv compile --check examples/*.yaml      exit 1 if bundle_out/ is stale (for CI)
  obsrv graph examples/credit_risk.yaml      Mermaid diagram of the compiled job
  obsrv schema > obsrv.schema.json           JSON Schema for editor completion
  obsrv status examples/credit_risk.yaml     task states of the latest local run of that job
  obsrv app                                  the Streamlit app on localhost (pip install -e ".[app]")

exit codes: 0 ok, 1 spec errors or stale output, 2 usage error, 3 internal error (a bug)."""

VALIDATE_EPILOG = """\
examples:
  obsrv validate examples/credit_risk.yaml
  obsrv validate examples/*.yaml --format json     machine-readable diagnostics on stdout

Every problem is reported in one run as file:line:col, a snippet with a caret, a stable code
(OBS101 ...) and a one-line fix. YAML syntax errors are the exception: parsing stops at the first.
Exit status 1 when any spec has errors (warnings alone exit 0)."""

COMPILE_EPILOG = """\
examples:
  obsrv compile examples/credit_risk.yaml              write bundle_out/<job name>.job.yml
  obsrv compile examples/*.yaml -o build/bundle         another output folder
  obsrv compile --check examples/*.yaml                 exit 1 if any output is missing or stale
  obsrv compile examples/credit_routing_gpu.yaml --gpu-runner notebook
                                                        GPU tasks as notebook tasks

Nothing is written unless every spec compiles. Every changed file is staged in full before any
output is replaced (a failed write leaves the old outputs as they were), and unchanged
files are not touched. Then `databricks bundle deploy` deploys them (databricks.yml includes
bundle_out/*.yml)."""

SCHEMA_EPILOG = """\
examples:
  obsrv schema > obsrv.schema.json
  # in a spec, for editor completion (YAML language server):
  # yaml-language-server: $schema=./obsrv.schema.json"""

GRAPH_EPILOG = """\
examples:
  obsrv graph examples/credit_risk.yaml > job.mmd
  obsrv graph examples/credit_risk.yaml | pbcopy     paste into any Mermaid renderer

GPU tasks are highlighted; the base models are drawn as one parallel group."""


def _print(text: str, stream: TextIO) -> None:
    if text:
        stream.write(text if text.endswith("\n") else text + "\n")


def _report(diagnostics: list, fmt: str, **extra: object) -> None:
    """Diagnostics go to stderr as text, or to stdout as one JSON document (for CI)."""
    from obsrv.compiler.diagnostics import render_json, render_text

    if fmt == "json":
        _print(render_json(diagnostics, **extra), sys.stdout)
    else:
        _print(render_text(diagnostics), sys.stderr)


# ------------------------------------------------------------------------------------ commands


def cmd_validate(args: argparse.Namespace) -> int:
    from obsrv.compiler.api import SpecError, load_spec

    diagnostics = []
    specs = []
    for path in args.specs:
        try:
            spec, _, warnings = load_spec(path)
        except SpecError as error:
            diagnostics += error.diagnostics
            continue
        diagnostics += warnings
        specs.append({"file": path, "job": spec.obsrv.context.name, "tasks": len(spec.obsrv.job)})
    failed = any(d.is_error for d in diagnostics)
    if args.format == "json":
        _report(diagnostics, "json", specs=specs)
    else:
        _report(diagnostics, "text")
        for entry in specs:
            _print(f"{entry['file']}: ok ({entry['job']}, {entry['tasks']} task{'s' if entry['tasks'] != 1 else ''})", sys.stdout)
    return EXIT_SPEC if failed else EXIT_OK


def cmd_compile(args: argparse.Namespace) -> int:
    from obsrv.compiler.api import SpecError, compile_files, merged_files, stale_outputs, write_outputs
    from obsrv.compiler.emit import MissingExtraError

    try:
        verify = args.check if args.verify is None else args.verify
        results = compile_files(args.specs, gpu_runner=args.gpu_runner, output_dir=args.output_dir, verify=verify)
    except SpecError as error:
        _report(error.diagnostics, args.format, files=[])
        return EXIT_SPEC
    except MissingExtraError as error:
        _print(f"obsrv: {error}", sys.stderr)
        return EXIT_USAGE
    warnings = [w for r in results for w in r.warnings]
    out = args.output_dir.rstrip("/\\") or "."
    if args.check:
        stale = set(stale_outputs(results, args.output_dir))
        files = [{"path": f"{out}/{name}", "status": "stale" if name in stale else "fresh"} for name in merged_files(results)]
        if args.format == "json":
            _report(warnings, "json", files=files, stale=bool(stale))
        else:
            _report(warnings, "text")
            for entry in files:
                if entry["status"] == "stale":
                    _print(f"{entry['path']}: stale or missing", sys.stderr)
                else:
                    _print(f"{entry['path']}: up to date", sys.stdout)
            if stale:
                command = ["obsrv compile", *args.specs]
                command += ["-o", args.output_dir] if out != DEFAULT_OUTPUT_DIR else []
                command += ["--gpu-runner", args.gpu_runner] if args.gpu_runner != DEFAULT_GPU_RUNNER else []
                _print(f"regenerate with: {' '.join(command)}", sys.stderr)
        return EXIT_SPEC if stale else EXIT_OK
    try:
        written = write_outputs(results, args.output_dir)
    except OSError as error:  # a read-only or full disk is the user's to fix, not an obsrv bug
        _print(f"obsrv: cannot write to {args.output_dir}: {error.strerror or error}", sys.stderr)
        return EXIT_SPEC
    files = [{"path": f"{out}/{name}", "status": "written" if changed else "unchanged"} for name, changed in written]
    if args.format == "json":
        _report(warnings, "json", files=files)
    else:
        _report(warnings, "text")
        for entry in files:
            _print(f"{entry['status']:>9} {entry['path']}", sys.stdout)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    import json

    from obsrv.compiler.spec import SpecFile

    schema = SpecFile.model_json_schema(by_alias=True)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": "obsrv spec (format version 1)"}
    _print(json.dumps(schema, indent=2), sys.stdout)
    return EXIT_OK


def cmd_graph(args: argparse.Namespace) -> int:
    from obsrv.compiler.api import SpecError, load_spec
    from obsrv.compiler.mermaid import mermaid
    from obsrv.compiler.plan import build_plan

    try:
        spec, doc, warnings = load_spec(args.spec)
    except SpecError as error:
        _report(error.diagnostics, "text")
        return EXIT_SPEC
    _report(warnings, "text")
    _print(mermaid(build_plan(spec, source=doc.file)), sys.stdout)
    return EXIT_OK


STATUS_EPILOG = """\
examples:
  obsrv status                                    the latest local run (any job)
  obsrv status examples/credit_risk.yaml          the latest local run of that spec's job
  obsrv status credit_risk_ensemble --run 3       local workflow 3
  obsrv status credit_risk_ensemble -t dev        the latest run of the deployed job (Jobs API)
  obsrv status --run 123456 --profile DEFAULT --format json

Locally it reads the runner's files (.obsrv/runs/<workflow id>/state.json); with --workspace,
--profile or -t it asks the Jobs API (databricks-sdk unified auth). States: pending, running,
succeeded, failed, skipped. Exit status 0 when the run succeeded or is still going, 1 when it failed."""


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from obsrv.app.run_status import StatusError
    from obsrv.app.status_query import local_query, profile_for_target, workspace_query
    from obsrv.compiler.api import SpecError

    try:
        if args.workspace or args.profile or args.target:
            from obsrv.app.run_status import workspace_client

            profile, host = profile_for_target(args.target) if args.target else (None, None)
            client = workspace_client(args.profile or profile, host=host)
            status = workspace_query(client.jobs, args.spec, args.run)
        else:
            status = local_query(args.workdir, args.spec, args.run)
    except SpecError as error:
        _report(error.diagnostics, args.format)
        return EXIT_SPEC
    except StatusError as error:
        _print(f"obsrv: {error}", sys.stderr)
        return EXIT_USAGE
    if args.format == "json":
        _print(json.dumps(status.to_dict(), indent=2), sys.stdout)
    else:
        from rich.console import Console

        from obsrv.app.status_query import render_text

        Console(width=None if sys.stdout.isatty() else 140).print(render_text(status))
    return EXIT_SPEC if status.state == "failed" else EXIT_OK


def cmd_app(args: argparse.Namespace) -> int:
    import importlib.util
    from pathlib import Path

    if importlib.util.find_spec("streamlit") is None:
        _print('obsrv: the app needs Streamlit: pip install -e ".[app]" (or pip install "obsrv[app]")', sys.stderr)
        return EXIT_USAGE
    from obsrv.app.ui import main as app_main

    command = [sys.executable, "-m", "streamlit", "run", str(Path(app_main.__file__)), "--server.address", args.host,
               "--server.port", str(args.port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
               "--", "--workdir", str(Path(args.workdir).resolve())]
    _print(f"obsrv app on http://{args.host}:{args.port} (workdir {Path(args.workdir).resolve()}); Ctrl-C stops it", sys.stdout)
    # In the workdir: the app's files (.obsrv/) and its messages' relative paths start there. The
    # server replaces this process (exec), so a signal to `obsrv app` reaches Streamlit itself
    # and no server outlives it.
    sys.stdout.flush()
    os.chdir(Path(args.workdir).resolve())
    os.execv(sys.executable, command)
    return EXIT_INTERNAL  # not reached: execv does not return


# -------------------------------------------------------------------------------------- parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("obsrv")
    except PackageNotFoundError:  # running from a source tree without an install
        return "unknown"


class _VersionAction(argparse.Action):
    """Like action="version", but reads the version only when asked (importlib.metadata is slow)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: object, **__: object) -> None:
        _print(f"obsrv {_version()}", sys.stdout)
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="obsrv",
        description="Compile ensemble-AutoML workflows written in YAML into Databricks bundle jobs.",
        epilog=MAIN_EPILOG,
        formatter_class=formatter,
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    fmt = argparse.ArgumentParser(add_help=False)
    fmt.add_argument(
        "--format", choices=("text", "json"), default="text", help="text (default) or json on stdout, for CI"
    )

    from obsrv.compiler.diagnostics import CODES

    codes = "\n".join(f"  {code}  {summary}" for code, summary in CODES.items())
    validate = sub.add_parser(
        "validate", parents=[fmt], help="check specs and report every error",
        epilog=f"{VALIDATE_EPILOG}\n\ndiagnostic codes:\n{codes}",
        formatter_class=formatter, description="Check obsrv specs without writing anything.",
    )
    validate.add_argument("specs", nargs="+", metavar="SPEC", help="obsrv YAML spec files")
    validate.set_defaults(func=cmd_validate)

    compile_ = sub.add_parser(
        "compile", parents=[fmt], help="compile specs into bundle job files", epilog=COMPILE_EPILOG,
        formatter_class=formatter,
        description="Compile obsrv specs into Databricks bundle job files, one <job name>.job.yml per spec.",
    )
    compile_.add_argument("specs", nargs="+", metavar="SPEC", help="obsrv YAML spec files")
    compile_.add_argument(
        "-o", "--output-dir", default=DEFAULT_OUTPUT_DIR, metavar="DIR", help=f"output folder (default: {DEFAULT_OUTPUT_DIR}/)"
    )
    compile_.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if any output file is missing or stale"
    )
    compile_.add_argument("--gpu-runner", choices=("wheel", "notebook"), default=DEFAULT_GPU_RUNNER, help=GPU_RUNNER_HELP)
    compile_.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also check each emitted job with databricks-bundles' typed Job model (an obsrv self-check; "
        "adds ~0.1 s of imports). Default: on with --check, off otherwise",
    )
    compile_.set_defaults(func=cmd_compile)

    schema = sub.add_parser(
        "schema", help="print the JSON Schema of the spec format", epilog=SCHEMA_EPILOG, formatter_class=formatter,
        description="Print the JSON Schema of obsrv specs (format version 1) on stdout.",
    )
    schema.set_defaults(func=cmd_schema)

    graph = sub.add_parser(
        "graph", help="print a Mermaid diagram of the compiled job", epilog=GRAPH_EPILOG, formatter_class=formatter,
        description="Print the task graph of the job SPEC compiles to, as a Mermaid flowchart.",
    )
    graph.add_argument("spec", metavar="SPEC", help="an obsrv YAML spec file")
    graph.set_defaults(func=cmd_graph)

    init = sub.add_parser(
        "init", help="scaffold a team project (dev/prod targets, an example spec, CI workflow)",
        formatter_class=formatter,
        description="Write databricks.yml (dev and prod targets), specs/example.yaml, bundle_out/, README.md "
        "and .github/workflows/obsrv.yml into DIR (default: the current folder). Writes nothing if any exists.",
    )
    init.add_argument("directory", nargs="?", default=".", metavar="DIR", help="project folder (created if missing)")
    init.add_argument("--name", help="bundle name (default: derived from the folder name)")
    init.set_defaults(func=cmd_init)

    status = sub.add_parser(
        "status", parents=[fmt], help="task states of a run, local or on a workspace", epilog=STATUS_EPILOG,
        formatter_class=formatter, description="Show the state of each task of a run: the app's Watch panel, in the terminal.",
    )
    status.add_argument("spec", nargs="?", metavar="SPEC | JOB", help="a spec file, or a job name (or id, on a workspace)")
    status.add_argument("--run", metavar="RUN_ID", help="this run (a local workflow id, or a workspace run id); default: the latest")
    status.add_argument("--workdir", default=".", help="folder that holds .obsrv/ (local runs; default: .)")
    status.add_argument("--workspace", action="store_true", help="ask the Jobs API (implied by --profile and -t)")
    status.add_argument("--profile", "-p", metavar="P", help="~/.databrickscfg profile, as the Databricks CLI's --profile")
    status.add_argument("-t", "--target", metavar="TARGET", help="databricks.yml target whose workspace to ask, as the Databricks CLI's -t")
    status.set_defaults(func=cmd_status)

    app = sub.add_parser(
        "app", help="start the obsrv app (Streamlit) on localhost", formatter_class=formatter,
        description="Start the obsrv app: edit and validate a spec, see its job, launch it locally, watch it, "
        "see the leaderboard. Needs the app extra: pip install -e \".[app]\".",
    )
    app.add_argument("--workdir", default=".", help="folder that holds .obsrv/ (default: .)")
    app.add_argument("--port", type=int, default=8501, help="port (default: 8501)")
    app.add_argument("--host", default="localhost", help="address to listen on (default: localhost)")
    app.set_defaults(func=cmd_app)

    # `run` and `data` belong to the runtime side, which defines their options itself.
    from obsrv.service_tasks.local import cli as local_cli

    local_cli.add_run_parser(sub)
    local_cli.add_score_parser(sub)
    local_cli.add_data_parser(sub)
    return parser


def cmd_init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from obsrv.compiler.scaffold import InitError, bundle_name_for, scaffold

    directory = Path(args.directory)
    name = args.name or bundle_name_for(directory)
    if not re.fullmatch(r"[A-Za-z]+(_?[A-Za-z0-9]+)*", name):
        _print(f"obsrv: --name {name!r}: use letters, digits and single underscores, starting with a letter", sys.stderr)
        return EXIT_USAGE
    try:
        written = scaffold(directory, name)
    except InitError as error:
        _print(f"obsrv: {error}", sys.stderr)
        return EXIT_USAGE
    for path in written:
        _print(f"  written {path}", sys.stdout)
    _print(f"next: cd {directory} && obsrv compile specs/*.yaml && databricks bundle deploy -t dev", sys.stdout)
    return EXIT_OK


def _internal_error(error: BaseException, fmt: str) -> int:
    if os.environ.get("OBSRV_DEBUG"):
        traceback.print_exc()
    detail = f"{type(error).__name__}: {error}"
    if fmt == "json":
        from obsrv.compiler.diagnostics import Diagnostic, render_json

        _print(render_json([Diagnostic("OBS901", f"internal error: {detail}", "<obsrv>")]), sys.stdout)
    _print(
        f"obsrv: internal error[OBS901]: {detail}\n"
        "  this is a bug in obsrv, not in your spec; rerun with OBSRV_DEBUG=1 for the traceback and report it",
        sys.stderr,
    )
    return EXIT_INTERNAL


# Commands of this module; `run` and `data` (the runtime's) are left as they are.
_COMPILER_COMMANDS = ("validate", "compile", "schema", "graph", "status")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors, 0 on --help
    if args.command in _COMPILER_COMMANDS:
        # pydantic looks for plugins by reading the entry points of every installed distribution
        # when it builds its first validator: 15-30 ms in an environment as large as obsrv's, for
        # plugins (observability hooks) that spec validation has no use for. The user's own
        # setting, if any, wins.
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        status = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `obsrv schema | head`: the reader left; not an error of ours. Point stdout at devnull so
        # the interpreter's final flush does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as error:  # noqa: BLE001 - the promise is: never a traceback
        return _internal_error(error, getattr(args, "format", "text"))
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

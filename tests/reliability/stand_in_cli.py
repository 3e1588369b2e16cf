"""`obsrv run` as users call it (the real CLI, compile, lock, state, signals), with the task
program swapped for `tests/runner/stand_in_task.py`: `python stand_in_cli.py KIND EXTRA_JSON ARGV...`.

KIND is `cold` or `warm`; EXTRA_JSON maps a task key (or "*") to extra stand-in argv (`--sleep`,
`--grandchild`, `--wait-file`); the stand-ins journal to `$STAND_IN_JOURNAL`. The MLflow store is
created by the real code unless the test points MLFLOW_TRACKING_URI elsewhere.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

RUNNER_TESTS = Path(__file__).resolve().parents[1] / "runner"
sys.path.insert(0, str(RUNNER_TESTS))

from obsrv.compiler import cli  # noqa: E402
from obsrv.service_tasks.local import scheduler as local_runner  # noqa: E402
from obsrv.service_tasks.local.launchers import ColdLauncher, Launcher, TaskProcess, WarmLauncher  # noqa: E402


class StandInLauncher:
    """The compiled argv, plus the journal and this test's behaviour for the task."""

    def __init__(self, kind: str, extra: dict[str, list[str]]) -> None:
        self.inner: Any = (WarmLauncher(target="stand_in_task:main", preload=()) if kind == "warm"
                           else ColdLauncher([sys.executable, str(RUNNER_TESTS / "stand_in_task.py")]))
        self.name = self.inner.name
        self.extra = extra
        if hasattr(self.inner, "start_function"):
            self.start_function = self.inner.start_function  # the runner's own helpers run for real

    def start(self, argv: list[str], env: dict[str, str], log_path: Path) -> TaskProcess:
        key = argv[argv.index("--task-id") + 1]
        extra = self.extra.get(key, self.extra.get("*", []))
        return self.inner.start([*argv, "--journal", os.environ["STAND_IN_JOURNAL"], *extra], env, log_path)


def main() -> int:
    kind, extra = sys.argv[1], json.loads(sys.argv[2])
    stand_in: Launcher = StandInLauncher(kind, extra)
    local_runner.make_launcher = lambda cold=False, command=None: stand_in  # type: ignore[assignment]
    return cli.main(sys.argv[3:])


if __name__ == "__main__":
    sys.exit(main())

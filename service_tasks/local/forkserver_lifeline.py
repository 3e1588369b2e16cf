"""Imported first by the warm launcher's forkserver: the server dies with the runner.

multiprocessing's forkserver exits when its "alive" pipe reaches end-of-file, but it hands the
write end of that pipe to every process it forks, so while one task lives the server would outlive
a killed runner. A parent-death signal (see `lifeline`) ends it with the runner instead. Importing
is the only hook the forkserver offers (`set_forkserver_preload`), hence the side effects.

The server is in the runner's process group, so a closed terminal sends it SIGHUP too. It ignores
that, as it ignores Ctrl-C: the runner stops the tasks cleanly (SIGTERM, then a grace), and the
server then ends with the runner. (Each task resets SIGHUP to the default: `launchers`.)
"""

from __future__ import annotations

import signal

from obsrv.service_tasks.local.lifeline import die_with_parent

die_with_parent()
signal.signal(signal.SIGHUP, signal.SIG_IGN)

"""Imported first by the warm launcher's forkserver: the server dies with the runner.

multiprocessing's forkserver exits when its "alive" pipe reaches end-of-file, but it hands the
write end of that pipe to every process it forks, so while one task lives the server would outlive
a killed runner. A parent-death signal (see `lifeline`) ends it with the runner instead. Importing
is the only hook the forkserver offers (`set_forkserver_preload`), hence the side effect.
"""

from __future__ import annotations

from obsrv.service_tasks.lifeline import die_with_parent

die_with_parent()

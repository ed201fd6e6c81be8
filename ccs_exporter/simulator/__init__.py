"""The CCS simulator: a faithful stand-in for the CCS jobs REST API, for demos, tests and benchmarks.

Product code never imports this package; ``ccs-exporter simulate``/``demo`` and the tests do::

    with Simulator(run_interval=None) as sim:      # the built-in dozen jobs, runs frozen
        client = CcsClient(sim.url, sim.username, SecretStr(sim.password))

It serves ``/ccs/api/v1`` (token, search job by id, latest job runs, create, update, delete, Search
Jobs, search by name, run and abort) with the documented rules and quirks, injects faults
(``sim.faults``), counts requests (``sim.request_count``) and offers scenario control (``finish_run``,
``start_run``, ``add_job``, ``remove_job``...), also over HTTP under ``/_simulator/`` for out-of-process
use. The Search Jobs grammar is in ``search.py`` and docs/simulator.md.

The built-in sample jobs (``sample_jobs.json``; fixed ids, names and 2026 timestamps, as of its
``CapturedAt``) are described there one by one, with their purpose and how each stands against its
schedule (missed, over its run-time limit, on time, not yet due, none); docs/simulator.md has
the same as a table. ``Simulator(live=True)`` moves them to now.

Jobs owned by nobody else belong to the simulator's user (``CCS\\demo`` by default).
"""

from __future__ import annotations

from ccs_exporter.simulator.cli import add_arguments, port_number, run
from ccs_exporter.simulator.core import Simulator
from ccs_exporter.simulator.faults import Faults, RequestRecord

__all__ = ["Faults", "RequestRecord", "Simulator", "add_arguments", "port_number", "run"]

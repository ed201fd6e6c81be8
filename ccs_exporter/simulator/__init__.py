"""The CCS simulator: a faithful stand-in for the CCS jobs REST API, for demos, tests and benchmarks.

Product code never imports this package; ``ccs-exporter simulate``/``demo`` and the tests do::

    with Simulator(run_interval=None) as sim:      # the built-in dozen jobs, runs frozen
        client = CcsClient(sim.url, sim.username, SecretStr(sim.password))

It serves ``/ccs/api/v1`` (token, search job by id, latest job runs, create, update, delete, Search
Jobs, search by name, run and abort) with the documented rules and quirks, injects faults
(``sim.faults``), counts requests (``sim.request_count``) and offers scenario control (``finish_run``,
``start_run``, ``add_job``, ``remove_job``...), also over HTTP under ``/_simulator/`` for out-of-process
use. The Search Jobs grammar is in ``search.py`` and the README.

The built-in sample jobs (``sample_jobs.json``; fixed ids, names and 2026 timestamps), by purpose:

====================================  ============================================================
id                                    purpose
====================================  ============================================================
3f2a7c41-8e5b-4d09-a6c3-1b7e9d2f4a01  completed (latest of 3 runs; an older one faulted)
7c1d5e92-2b4a-4f6e-8d3c-5a9b0e1f2c02  faulted, Error+Warning messages, 2 consecutive failures;
                                      starts ``+05:30``, ends naive UTC (the jobruns sample)
a94e0b37-4c2f-4e18-9d5a-6b8c7d0e3f03  aborted (latest run); the previous one completed
5e7b9c14-3a2d-4b8f-a1e6-7c0d9f8e4d04  executing: latest run status 2, no end; an older one finished
c2d4f6a8-9b1e-4d3c-8f5a-2e7b0c9d5e05  pending: latest run status 1, no end; an older one finished
23c59087-f3d4-4e05-a39e-3440c58e58fb  never run (``0001-01-01T00:00:00``, no runs): the docs' sample
e1f3a5c7-2d4b-4e6f-9a8c-0b2d4f6a8c07  properties only: ``REPORTJOB`` (``JobConfigDetails`` null)
0d2f4b6e-8a1c-4e3b-b5d7-9f1a3c5e7b08  properties only: ``ASSET_IMPORTJOB``, Information messages
f8a0c2e4-6b8d-4f1a-8c3e-5d7f9b1d3f09  system job (``IsSystemJob`` true): delete and update answer 403
6a8c0e2f-4d6b-4a9c-9e1f-3b5d7f9b1d10  owned by ``CCS\\auditor``: delete answers 403
b3d5f7a9-1c3e-4a5b-8d7f-9e1b3d5f7a11  hostile name: quotes, backslashes, a newline, Prüfung, 監査
4c6e8a0b-2d4f-4b6d-9f8a-1c3e5a7c9e12  DateTimes: ``-08:00`` 7-digit fractions, ``+05:30``, naive;
                                      4 runs, 3 consecutive failures after a success
====================================  ============================================================

Jobs owned by nobody else belong to the simulator's user (``CCS\\demo`` by default).
"""

from __future__ import annotations

from ccs_exporter.simulator.cli import add_arguments, run
from ccs_exporter.simulator.core import Simulator
from ccs_exporter.simulator.faults import Faults, RequestRecord

__all__ = ["Faults", "RequestRecord", "Simulator", "add_arguments", "run"]

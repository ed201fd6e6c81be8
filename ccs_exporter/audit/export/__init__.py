"""The audit trail for SIEMs: records mapped to OCSF or ECS, shipped with their proof, and checked back.

Every exported event carries the whole original record (OCSF ``raw_data``, ECS ``event.original``), its
sequence and its chain hash, so the SIEM's copy can be verified on its own (``verify_export``) and
the sequence serves as the dedupe key of at-least-once shipping (``shipper``, ``cursor``).
Modules: ``fields`` (reading a record), ``ocsf``, ``ecs``, ``formats`` (the registry of formats),
``source`` (reading the log as it grows), ``cursor``, ``shipper``, ``verify_export`` and
``destinations`` (stdout, syslog over TLS, Splunk HEC).
"""

from __future__ import annotations

from ccs_exporter.audit.export.formats import FORMATS, ExportFormat, format_named

__all__ = ["FORMATS", "ExportFormat", "format_named"]

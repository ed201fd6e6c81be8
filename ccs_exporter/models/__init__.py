"""Typed models of the CCS jobs API payloads: tolerant parsing for what CCS sends, strict for what we send.

``values`` reads the values CCS sends (status codes, GUIDs, DateTimes), ``responses`` models what CCS
answers, ``requests`` what we send. Nothing here does I/O or imports the rest of the package.
"""

from __future__ import annotations

from ccs_exporter.models.requests import (
    AssetRef,
    CreateJobRequest,
    Guid,
    JobDetailsCreate,
    JobDetailsUpdate,
    JobTypeName,
    NotificationSpec,
    ScheduleSpec,
    request_body,
)
from ccs_exporter.models.responses import (
    AssetResolutionInfo,
    Job,
    JobConfig,
    JobMessage,
    JobPropertiesData,
    JobRun,
    JobRuns,
    JobSchedule,
    NotificationData,
)
from ccs_exporter.models.values import (
    GUID_PATTERN,
    CcsBool,
    CcsDateTime,
    CcsInt,
    CcsList,
    JobStatus,
    ccs_utc_offset,
    guid_or_none,
    json_type_name,
    none_to_list,
    normalize_guid,
    parse_ccs_datetime,
)

__all__ = [
    "GUID_PATTERN",
    "AssetRef",
    "AssetResolutionInfo",
    "CcsBool",
    "CcsDateTime",
    "CcsInt",
    "CcsList",
    "CreateJobRequest",
    "Guid",
    "Job",
    "JobConfig",
    "JobDetailsCreate",
    "JobDetailsUpdate",
    "JobMessage",
    "JobPropertiesData",
    "JobRun",
    "JobRuns",
    "JobSchedule",
    "JobStatus",
    "JobTypeName",
    "NotificationData",
    "NotificationSpec",
    "ScheduleSpec",
    "ccs_utc_offset",
    "guid_or_none",
    "json_type_name",
    "none_to_list",
    "normalize_guid",
    "parse_ccs_datetime",
    "request_body",
]

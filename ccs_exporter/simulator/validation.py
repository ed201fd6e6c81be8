"""The documented rules of the Create Job and Update Job bodies, as the simulator enforces them.

The pages give the rules (mandatory fields, ranges, case-sensitive ``JobType``, notification blocks
required by their flags) and a few messages; where they give no message the simulator's wording is an
assumption, always in CCS's ``Invalid input data. ...`` style. Like the .NET JSON reader behind CCS,
property names match case-insensitively, unknown properties are ignored and ``"true"`` strings are
booleans.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ccs_exporter.models import normalize_guid, parse_ccs_datetime

PARSE_ERROR = (
    "Exception while parsing JSON. Please check expected type of input parameter and its given value."
)
NULL_CREATE = "Invalid input data. Either JobType or JobDetails is null."
NULL_UPDATE = "Invalid input data. Either JobID or JobDetails is null."

# Create-time JobType (case-sensitive) -> the internal name search-by-id reports.
CONFIG_JOB_TYPES = {
    "CollectionEvaluationJob": "CHAINED_EVALUATIONJOB",
    "CollectionJob": "COLLECTIONJOB",
    "EvaluationJob": "EVALUATIONJOB",
}
CREATE_INCREMENTAL_MAX = 100
UPDATE_INCREMENTAL_MAX = 1000

_SCHEDULE_BOOLS = (
    "EndJobRunConfigured",
    "MonthlyIsByOrdinalDay",
    "RunEveryNDays",
    "RunNow",
    "RunOnce",
    "RunPeriodically",
)
_SCHEDULE_INTS = (
    "SubScheduleRepeatDays",
    "SubScheduleRepeatPeriodDays",
    "MonthlyDay",
    "MonthlyDayOfTheWeek",
    "MonthlyOrdinalDay",
    "MonthlyRecurEvery",
    "RecurrenceType",
    "RepeatDays",
    "RepeatMinutes",
    "WeeklyDay",
    "WeeklyRecurEvery",
)
_INTERVAL_RE = re.compile(r"^\d{1,3}:[0-5]\d(:[0-5]\d)?$")
_INT_RE = re.compile(r"^[+-]?\d+$")


class ApiError(Exception):
    """A CCS error answer: the status and the ``Message`` of the JSON body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _invalid(message: str) -> ApiError:
    return ApiError(400, f"Invalid input data. {message}")


@dataclass
class JobDefinition:
    """The parsed ``JobDetails``: config fields as search-by-id shows them, and the settings it does not."""

    name: str | None = None
    config_changes: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    run_now: bool = False

    def config(self, stamp: str) -> dict[str, Any]:
        """Full config details for a new job: the given fields over the defaults."""
        schedule = default_schedule(stamp)
        schedule.update(self.config_changes.get("Schedule") or {})
        return {
            "EvaluationResultViewers": [],
            "Schedule": schedule,
            "JobDescription": self.config_changes.get("JobDescription"),
            "SuccessNotification": self.config_changes.get("SuccessNotification"),
            "FailureNotification": self.config_changes.get("FailureNotification"),
            "ShouldSendSuccessNotification": self.config_changes.get("ShouldSendSuccessNotification", False),
            "ShouldSendFailureNotification": self.config_changes.get("ShouldSendFailureNotification", False),
            "JobName": self.name,
            "AssetsResolutionInfo": self.config_changes["AssetsResolutionInfo"],
            "Standards": self.config_changes["Standards"],
        }


def default_schedule(start_date: str) -> dict[str, Any]:
    """The schedule of a job created without one (the field order of the search-by-id sample)."""
    schedule: dict[str, Any] = {
        "SubScheduleRepeatDays": 0,
        "SubScheduleRepeatPeriodDays": 0,
        "EndJobRunTimeInterval": "00:00:00",
        "EndJobRunConfigured": False,
        "RepeatDays": 0,
        "RunEveryNDays": False,
        "RunOnce": False,
        "RunNow": False,
        "RunPeriodically": False,
        "StartDate": start_date,
        "RepeatMinutes": 0,
        "RecurrenceType": 0,
        "WeeklyDay": 0,
        "WeeklyRecurEvery": 0,
        "MonthlyDay": 0,
        "MonthlyRecurEvery": 0,
        "MonthlyIsByOrdinalDay": False,
        "MonthlyOrdinalDay": 0,
        "MonthlyDayOfTheWeek": 0,
    }
    return schedule


def validate_create(body: Any) -> tuple[str, JobDefinition]:
    """Check a Create Job body; return the internal JobType and the definition, or raise ApiError 400."""
    if not isinstance(body, dict):
        raise ApiError(400, PARSE_ERROR)
    fields = _folded(body)
    job_type, details = fields.get("jobtype"), fields.get("jobdetails")
    if job_type is None or details is None:
        raise ApiError(400, NULL_CREATE)
    if not isinstance(job_type, str) or not isinstance(details, dict):
        raise ApiError(400, PARSE_ERROR)
    if job_type not in CONFIG_JOB_TYPES:
        raise ApiError(400, f"Given job type '{job_type}' not supported.")
    definition = _parse_details(details, CREATE_INCREMENTAL_MAX)
    for mandatory in ("JobName", "AssetsResolutionInfo", "Standards"):
        present = definition.name if mandatory == "JobName" else definition.config_changes.get(mandatory)
        if not present:
            raise _invalid(f"{mandatory} is mandatory.")
    _check_notifications(definition.config_changes, {})
    return CONFIG_JOB_TYPES[job_type], definition


def validate_update(details: Any, current: dict[str, Any]) -> JobDefinition:
    """Check an Update Job ``JobDetails`` against the job's current config; raise ApiError 400."""
    if not isinstance(details, dict):
        raise ApiError(400, PARSE_ERROR)
    definition = _parse_details(details, UPDATE_INCREMENTAL_MAX)
    for listed in ("AssetsResolutionInfo", "Standards"):
        if listed in definition.config_changes and not definition.config_changes[listed]:
            raise _invalid(f"{listed} must not be empty.")
    _check_notifications(definition.config_changes, current)
    if "Schedule" in definition.config_changes:
        definition.config_changes["Schedule"] = {
            **(current.get("Schedule") or {}),
            **definition.config_changes["Schedule"],
        }
    if definition.name is not None:
        definition.config_changes["JobName"] = definition.name
    return definition


def _folded(mapping: dict[str, Any]) -> dict[str, Any]:
    """Keys in lower case; a null value counts as absent."""
    return {str(key).lower(): value for key, value in mapping.items() if value is not None}


def _parse_details(details: dict[str, Any], incremental_max: int) -> JobDefinition:
    fields = _folded(details)
    definition = JobDefinition()
    config = definition.config_changes
    settings = definition.settings
    if "jobname" in fields:
        name = _string(fields["jobname"])
        if not name.strip():
            raise _invalid("JobName is mandatory.")
        definition.name = name
    if "jobdescription" in fields:
        config["JobDescription"] = _string(fields["jobdescription"])
    if "assetsresolutioninfo" in fields:
        config["AssetsResolutionInfo"] = _assets(fields["assetsresolutioninfo"])
    if "standards" in fields:
        config["Standards"] = _guids(fields["standards"])
    if "assettimeout" in fields:
        settings["AssetTimeOut"] = _ranged(fields["assettimeout"], "AssetTimeOut", 1, 500)
    if "isincremental" in fields:
        settings["IsIncremental"] = _boolean(fields["isincremental"])
    if "incrementalperiod" in fields:
        settings["IncrementalPeriod"] = _ranged(
            fields["incrementalperiod"], "IncrementalPeriod", 1, incremental_max
        )
        settings.setdefault("IsIncremental", True)
    if "collectiononlytimeouthours" in fields:
        settings["CollectionOnlyTimeOutHours"] = _ranged(
            fields["collectiononlytimeouthours"], "CollectionOnlyTimeOutHours", 0, 1000
        )
    if "collectiononlytimeoutmins" in fields:
        settings["CollectionOnlyTimeOutMins"] = _ranged(
            fields["collectiononlytimeoutmins"], "CollectionOnlyTimeOutMins", 0, 59
        )
    if "shouldsynchronizeresults" in fields:
        settings["ShouldSynchronizeResults"] = _boolean(fields["shouldsynchronizeresults"])
    for kind in ("Success", "Failure"):
        block = fields.get(f"{kind.lower()}notification")
        if block is not None:
            config[f"{kind}Notification"] = _notification(block)
        flag = fields.get(f"shouldsend{kind.lower()}notification")
        if flag is not None:
            config[f"ShouldSend{kind}Notification"] = _boolean(flag)
    if "schedule" in fields:
        config["Schedule"] = _schedule(fields["schedule"])
        definition.run_now = bool(config["Schedule"].get("RunNow"))
    return definition


def _check_notifications(changes: dict[str, Any], current: dict[str, Any]) -> None:
    for kind in ("Success", "Failure"):
        flag_key, block_key = f"ShouldSend{kind}Notification", f"{kind}Notification"
        flag = changes.get(flag_key, current.get(flag_key, False))
        block = changes.get(block_key, current.get(block_key))
        if not flag:
            continue
        if not block:
            raise _invalid(f"{block_key} is mandatory when {flag_key} is true.")
        if not block.get("ToEmailAddress"):
            raise _invalid(f"{block_key}.ToEmailAddress is mandatory when {flag_key} is true.")


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ApiError(400, PARSE_ERROR)
    return value


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ApiError(400, PARSE_ERROR)


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ApiError(400, PARSE_ERROR)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT_RE.match(value.strip()):
        return int(value)
    raise ApiError(400, PARSE_ERROR)


def _ranged(value: Any, name: str, low: int, high: int) -> int:
    number = _integer(value)
    if not low <= number <= high:
        raise _invalid(f"{name} must be between {low} and {high}.")
    return number


def guid(job_id: str) -> str:
    """A job id given to the control API or a scenario method, normalised; ApiError 400 naming it."""
    try:
        return normalize_guid(job_id)
    except ValueError:
        raise ApiError(400, f"{job_id!r} is not a GUID") from None


def _guid(value: Any) -> str:
    try:
        return normalize_guid(_string(value))
    except ValueError:
        raise ApiError(400, PARSE_ERROR) from None


def _guids(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ApiError(400, PARSE_ERROR)
    return [_guid(item) for item in value]


def _assets(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise ApiError(400, PARSE_ERROR)
    assets = []
    for item in value:
        if not isinstance(item, dict):
            raise ApiError(400, PARSE_ERROR)
        fields = _folded(item)
        asset_id, asset_type = fields.get("id"), fields.get("type")
        if asset_id is None or not asset_type:
            raise _invalid("Each AssetsResolutionInfo entry needs an Id and a Type.")
        _guid(asset_id)
        assets.append({"Id": str(asset_id), "Type": _string(asset_type)})
    return assets


def _notification(value: Any) -> dict[str, str | None]:
    if not isinstance(value, dict):
        raise ApiError(400, PARSE_ERROR)
    fields = _folded(value)
    block: dict[str, str | None] = {}
    for name in ("ToEmailAddress", "FromEmailAddress", "Subject", "Body"):
        item = fields.get(name.lower())
        block[name] = None if item is None else _string(item)
    return block


def _schedule(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ApiError(400, PARSE_ERROR)
    fields = _folded(value)
    schedule: dict[str, Any] = {}
    for name in _SCHEDULE_BOOLS:
        if name.lower() in fields:
            schedule[name] = _boolean(fields[name.lower()])
    for name in _SCHEDULE_INTS:
        if name.lower() in fields:
            number = _integer(fields[name.lower()])
            if number < 0:
                raise _invalid(f"Schedule.{name} must not be negative.")
            schedule[name] = number
    if "endjobruntimeinterval" in fields:
        interval = _string(fields["endjobruntimeinterval"])
        if not _INTERVAL_RE.match(interval):
            raise ApiError(400, PARSE_ERROR)
        schedule["EndJobRunTimeInterval"] = interval
    if "startdate" in fields:
        start = _string(fields["startdate"])
        try:
            parse_ccs_datetime(start)
        except ValueError:
            raise ApiError(400, PARSE_ERROR) from None
        schedule["StartDate"] = start
    return schedule

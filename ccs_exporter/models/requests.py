"""Request models of what we send (``CreateJobRequest``, ``JobDetailsUpdate``): strict.

They apply the documented rules before anything is sent, so a bad spec fails locally with the field's name.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ccs_exporter.models.values import GUID_PATTERN, parse_ccs_datetime

JobTypeName = Literal["CollectionEvaluationJob", "CollectionJob", "EvaluationJob"]
Guid = Annotated[str, Field(pattern=GUID_PATTERN)]
_TIME_INTERVAL_RE = re.compile(r"^\d{1,3}:[0-5]\d(:[0-5]\d)?$")


class _RequestModel(BaseModel):
    """Strict base for bodies we send: a misspelt field is an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class AssetRef(_RequestModel):
    Id: Guid
    Type: str = Field(min_length=1)


class NotificationSpec(_RequestModel):
    ToEmailAddress: str | None = None
    FromEmailAddress: str | None = None
    Subject: str | None = None
    Body: str | None = None


class ScheduleSpec(_RequestModel):
    EndJobRunConfigured: bool | None = None
    EndJobRunTimeInterval: str | None = None
    SubScheduleRepeatDays: int | None = Field(default=None, ge=0)
    SubScheduleRepeatPeriodDays: int | None = Field(default=None, ge=0)
    MonthlyDay: int | None = Field(default=None, ge=0, le=31)
    MonthlyDayOfTheWeek: int | None = Field(default=None, ge=0)
    MonthlyIsByOrdinalDay: bool | None = None
    MonthlyOrdinalDay: int | None = Field(default=None, ge=0)
    MonthlyRecurEvery: int | None = Field(default=None, ge=0)
    RecurrenceType: int | None = Field(default=None, ge=0)
    RepeatDays: int | None = Field(default=None, ge=0)
    RepeatMinutes: int | None = Field(default=None, ge=0)
    RunEveryNDays: bool | None = None
    RunNow: bool | None = None
    RunOnce: bool | None = None
    RunPeriodically: bool | None = None
    StartDate: str | None = None
    WeeklyDay: int | None = Field(default=None, ge=0)
    WeeklyRecurEvery: int | None = Field(default=None, ge=0)

    @field_validator("EndJobRunTimeInterval")
    @classmethod
    def _interval_is_hh_mm(cls, value: str | None) -> str | None:
        if value is not None and not _TIME_INTERVAL_RE.match(value):
            raise ValueError("must be a duration HH:MM:SS such as 04:30:00")
        return value

    @field_validator("StartDate")
    @classmethod
    def _start_date_parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_ccs_datetime(value)
            except ValueError:
                # parse_ccs_datetime's message repeats the value; a spec's errors never echo their input.
                raise ValueError("must be a DateTime such as 2019-01-05T04:10:27-08:00") from None
        return value


class _JobDetailsBase(_RequestModel):
    JobDescription: str | None = None
    AssetTimeOut: int | None = Field(default=None, ge=1, le=500)
    IsIncremental: bool | None = None
    CollectionOnlyTimeOutHours: int | None = Field(default=None, ge=0, le=1000)
    CollectionOnlyTimeOutMins: int | None = Field(default=None, ge=0, le=59)
    SuccessNotification: NotificationSpec | None = None
    FailureNotification: NotificationSpec | None = None
    ShouldSendSuccessNotification: bool | None = None
    ShouldSendFailureNotification: bool | None = None
    ShouldSynchronizeResults: bool | None = None
    Schedule: ScheduleSpec | None = None

    @model_validator(mode="after")
    def _notifications_present_when_enabled(self) -> _JobDetailsBase:
        for kind in ("Success", "Failure"):
            if getattr(self, f"ShouldSend{kind}Notification"):
                block: NotificationSpec | None = getattr(self, f"{kind}Notification")
                if block is None:
                    raise ValueError(
                        f"{kind}Notification is required when ShouldSend{kind}Notification is true"
                    )
                if not block.ToEmailAddress:
                    raise ValueError(
                        f"{kind}Notification.ToEmailAddress is required when "
                        f"ShouldSend{kind}Notification is true"
                    )
        return self


class JobDetailsCreate(_JobDetailsBase):
    """``JobDetails`` of a Create Job body: assets, name and standards are mandatory."""

    AssetsResolutionInfo: list[AssetRef] = Field(min_length=1)
    JobName: str = Field(min_length=1)
    Standards: list[Guid] = Field(min_length=1)
    IncrementalPeriod: int | None = Field(default=None, ge=1, le=100)


class JobDetailsUpdate(_JobDetailsBase):
    """``JobDetails`` of an Update Job body: every field optional, at least one present."""

    AssetsResolutionInfo: list[AssetRef] | None = Field(default=None, min_length=1)
    JobName: str | None = Field(default=None, min_length=1)
    Standards: list[Guid] | None = Field(default=None, min_length=1)
    IncrementalPeriod: int | None = Field(default=None, ge=1, le=1000)

    @model_validator(mode="after")
    def _not_empty(self) -> JobDetailsUpdate:
        if not self.model_fields_set:
            raise ValueError("JobDetails must name at least one field to change")
        return self


class CreateJobRequest(_RequestModel):
    """The Create Job body. ``JobType`` values are case-sensitive, as CCS documents."""

    JobType: JobTypeName
    JobDetails: JobDetailsCreate


def request_body(model: BaseModel) -> dict[str, Any]:
    """The JSON body for a request model: only the fields the user gave, in CCS's names."""
    return model.model_dump(mode="json", exclude_unset=True)

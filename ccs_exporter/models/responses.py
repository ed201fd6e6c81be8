"""Read models of what CCS sends (``Job``, ``JobRuns`` and their parts): tolerant, never rejecting.

They accept everything the vendor pages show: ``null`` lists, string booleans, any ``JobType`` string
and unknown fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_validator,
)

from ccs_exporter.models.values import (
    CcsBool,
    CcsDateTime,
    CcsInt,
    CcsList,
    JobStatus,
    ccs_utc_offset,
    json_type_name,
    none_to_list,
    normalize_guid,
)


class _ReadModel(BaseModel):
    """Tolerant base for payloads CCS sends: unknown fields are kept, never rejected."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class AssetResolutionInfo(_ReadModel):
    Id: str = ""
    Type: str = ""


class NotificationData(_ReadModel):
    ToEmailAddress: str | None = None
    FromEmailAddress: str | None = None
    Subject: str | None = None
    Body: str | None = None


class JobSchedule(_ReadModel):
    """The job schedule as CCS reports it; every field is optional.

    A field whose value cannot be read (``"RepeatDays": "often"``) takes its default and is named in
    ``invalid_fields`` instead of failing the whole job: a bad schedule must not cost the job's run
    metrics. ``StartDate`` is held in UTC like every DateTime; ``start_date_local`` gives it back in the
    offset CCS wrote it in, which schedules keep.
    """

    EndJobRunConfigured: CcsBool = False
    EndJobRunTimeInterval: str | None = None
    SubScheduleRepeatDays: CcsInt = 0
    SubScheduleRepeatPeriodDays: CcsInt = 0
    MonthlyDay: CcsInt = 0
    MonthlyDayOfTheWeek: CcsInt = 0
    MonthlyIsByOrdinalDay: CcsBool = False
    MonthlyOrdinalDay: CcsInt = 0
    MonthlyRecurEvery: CcsInt = 0
    RecurrenceType: CcsInt = 0
    RepeatDays: CcsInt = 0
    RepeatMinutes: CcsInt = 0
    RunEveryNDays: CcsBool = False
    RunNow: CcsBool = False
    RunOnce: CcsBool = False
    RunPeriodically: CcsBool = False
    StartDate: CcsDateTime = None
    WeeklyDay: CcsInt = 0
    WeeklyRecurEvery: CcsInt = 0

    _start_offset: timedelta = PrivateAttr(default=timedelta(0))
    _invalid_fields: tuple[str, ...] = PrivateAttr(default=())
    _sent_instead: tuple[Any, ...] = PrivateAttr(default=())

    @classmethod
    def from_non_object(cls, value: Any) -> JobSchedule:
        """The schedule of a job whose ``Schedule`` is no object (``"weekly"``): every field at its default,
        ``not_an_object`` naming what was sent; it serializes back as sent."""
        schedule = cls()
        schedule._sent_instead = (value,)
        return schedule

    @property
    def not_an_object(self) -> str | None:
        """What CCS sent in place of a ``Schedule`` object (``"a string"``, ``"a list"``...), else None."""
        if not self._sent_instead:
            return None
        return json_type_name(self._sent_instead[0])

    def fingerprint(self) -> int:
        """A hash of all that the schedule's meaning depends on: every field, the offset, what was unreadable.

        Equal blocks give equal fingerprints, so what is derived from a block can be kept while it stays.
        """
        return hash(
            (tuple(self.__dict__.values()), self._start_offset, self._invalid_fields, self.not_an_object)
        )

    @property
    def sent_instead(self) -> tuple[Any, ...]:
        """``(value,)`` when CCS sent ``value`` in place of a ``Schedule`` object, else ``()``."""
        return self._sent_instead

    @model_validator(mode="wrap")
    @classmethod
    def _tolerate_bad_fields(cls, data: Any, handler: ModelWrapValidatorHandler[JobSchedule]) -> JobSchedule:
        if not isinstance(data, Mapping):
            return handler(data)
        invalid: tuple[str, ...] = ()
        try:
            schedule = handler(data)
        except ValidationError as exc:
            invalid = tuple(sorted({str(error["loc"][0]) for error in exc.errors() if error.get("loc")}))
            schedule = handler({key: value for key, value in data.items() if key not in invalid})
        schedule._invalid_fields = invalid
        if schedule.StartDate is not None:
            schedule._start_offset = ccs_utc_offset(data.get("StartDate")) or timedelta(0)
        return schedule

    @property
    def invalid_fields(self) -> tuple[str, ...]:
        """Names of the fields CCS sent with a value that could not be read (they hold their default)."""
        return self._invalid_fields

    @property
    def start_date_local(self) -> datetime | None:
        """``StartDate`` in the UTC offset CCS wrote it in (UTC when it had none); ``None`` for never."""
        if self.StartDate is None:
            return None
        try:
            return self.StartDate.astimezone(timezone(self._start_offset))
        except OverflowError:
            return None


class JobPropertiesData(_ReadModel):
    """What search-by-id returns for every job type."""

    JobID: str
    Name: str = ""
    JobType: str = ""
    Owner: str | None = None
    IsSystemJob: CcsBool = False
    JobCreationTime: CcsDateTime = None
    JobModifiedTime: CcsDateTime = None
    LastRunDate: CcsDateTime = None
    LastRunStatus: CcsInt = 0

    @field_validator("JobID")
    @classmethod
    def _job_id_is_guid(cls, value: str) -> str:
        return normalize_guid(value)

    @property
    def last_run_status(self) -> JobStatus | None:
        """The status enum, or None for a code outside 0-7."""
        try:
            return JobStatus(self.LastRunStatus)
        except ValueError:
            return None


class JobConfig(_ReadModel):
    """Configuration, returned only for CER, collection and evaluation jobs."""

    JobName: str | None = None
    JobDescription: str | None = None
    EvaluationResultViewers: CcsList = Field(default_factory=list)
    Schedule: JobSchedule | None = None
    SuccessNotification: NotificationData | None = None
    FailureNotification: NotificationData | None = None
    ShouldSendSuccessNotification: CcsBool = False
    ShouldSendFailureNotification: CcsBool = False
    AssetsResolutionInfo: Annotated[list[AssetResolutionInfo], BeforeValidator(none_to_list)] = Field(
        default_factory=list
    )
    Standards: Annotated[list[str], BeforeValidator(none_to_list)] = Field(default_factory=list)

    @field_validator("Schedule", mode="wrap")
    @classmethod
    def _tolerate_schedule_not_an_object(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # A Schedule CCS sends as a string, number or list costs the job its schedule, not its metrics.
        if value is None or isinstance(value, (Mapping, JobSchedule)):
            return handler(value)
        return JobSchedule.from_non_object(value)

    @field_serializer("Schedule", mode="wrap")
    def _schedule_as_sent(self, value: JobSchedule | None, handler: SerializerFunctionWrapHandler) -> Any:
        # `jobs get` and audit records show what CCS sent, not a made-up object of defaults.
        if value is not None and value.sent_instead:
            return value.sent_instead[0]
        return handler(value)


class Job(_ReadModel):
    """The search-job-by-id response."""

    JobProperties: JobPropertiesData
    JobConfigDetails: JobConfig | None = None


class JobMessage(_ReadModel):
    DateTime: CcsDateTime = None
    Message: str | None = None
    MessageDetails: str | None = None
    Category: str | None = None
    Asset: str | None = None
    AssetType: str | None = None
    AssetOwner: str | None = None


class JobRun(_ReadModel):
    """One entry of ``JobStatusInfo``: a run of the job."""

    JobRunID: str | None = None
    Status: CcsInt = 0
    JobStartTime: CcsDateTime = None
    JobEndTime: CcsDateTime = None
    CustomStatusText: str | None = None
    JobSummary: str | None = None
    StatusDetails: str | None = None
    Exception: str | None = None
    ActivityStatusList: CcsList = Field(default_factory=list)
    MessageCount: CcsInt = 0
    JobMessages: Annotated[list[JobMessage], BeforeValidator(none_to_list)] = Field(default_factory=list)

    @property
    def status(self) -> JobStatus | None:
        """The status enum, or None for a code outside 0-7."""
        try:
            return JobStatus(self.Status)
        except ValueError:
            return None

    @property
    def is_finished(self) -> bool:
        """The run has ended (it is neither pending nor executing, and has an end time)."""
        status = self.status
        return self.JobEndTime is not None and not (status is not None and status.is_running)

    @property
    def duration_seconds(self) -> float | None:
        """End minus start, for a finished run with both times; never negative."""
        if not self.is_finished or self.JobStartTime is None or self.JobEndTime is None:
            return None
        return max(0.0, (self.JobEndTime - self.JobStartTime).total_seconds())


class JobRuns(_ReadModel):
    """The jobruns response: the latest runs, newest first as CCS returns them."""

    JobID: str | None = None
    TotalJobRuns: CcsInt = 0
    JobStatusInfo: Annotated[list[JobRun], BeforeValidator(none_to_list)] = Field(default_factory=list)

    def newest_first(self) -> list[JobRun]:
        """Runs ordered newest first by start time; runs without a start keep their place at the end.

        The pages do not say how ``JobStatusInfo`` is ordered, so we never rely on it.
        """
        started = [run for run in self.JobStatusInfo if run.JobStartTime is not None]
        unstarted = [run for run in self.JobStatusInfo if run.JobStartTime is None]
        started.sort(key=lambda run: run.JobStartTime or datetime.min, reverse=True)
        return started + unstarted

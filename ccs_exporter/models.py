"""Typed models of the CCS jobs API payloads: tolerant parsing for what CCS sends, strict for what we send.

Read models (``Job``, ``JobRuns`` and their parts) accept everything the vendor pages show: DateTimes
with or without an offset (naive means UTC), .NET's 7-digit fractions, ``0001-01-01T00:00:00`` for
"never", ``null`` lists, string booleans, any ``JobType`` string and unknown fields.
Request models (``CreateJobRequest``, ``JobDetailsUpdate``) apply the documented rules before anything
is sent, so a bad spec fails locally with the field's name.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

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

GUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_GUID_RE = re.compile(GUID_PATTERN)
_BRACED_GUID_RE = re.compile(r"^\{(" + GUID_PATTERN[1:-1] + r")\}$")

_ISO_RE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<frac>\d+))?)?"
    r"\s*(?P<tz>Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
# WCF's JSON DateTime form, e.g. "/Date(1537422282000+0530)/"; not in the pages, but .NET services emit it.
_WCF_RE = re.compile(r"^/?Date\((?P<ms>-?\d+)(?P<tz>[+-]\d{4})?\)/?$")


class JobStatus(enum.IntEnum):
    """The documented job (run) status codes."""

    NONE = 0
    PENDING = 1
    EXECUTING = 2
    IDLE = 3
    COMPLETED = 4
    FAULTED = 5
    CUSTOM = 6
    ABORTED = 7

    @property
    def label(self) -> str:
        """The lower-case name used in metric labels (``faulted``)."""
        return self.name.lower()

    @property
    def is_running(self) -> bool:
        """Pending or executing: the run has not finished."""
        return self in (JobStatus.PENDING, JobStatus.EXECUTING)


def normalize_guid(value: str) -> str:
    """Return the GUID in lower case without braces, or raise ``ValueError`` naming the value."""
    text = value.strip()
    braced = _BRACED_GUID_RE.match(text)
    if braced:
        text = braced.group(1)
    if not _GUID_RE.match(text):
        raise ValueError(f"{value!r} is not a GUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
    return text.lower()


def guid_or_none(value: Any) -> str | None:
    """A GUID as ``normalize_guid`` gives it; None for no value, a value that is not text, or no GUID."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return normalize_guid(value)
    except ValueError:
        return None


def parse_ccs_datetime(value: Any) -> datetime | None:
    """Parse a CCS DateTime into an aware UTC datetime; ``None`` for null, empty or year 1 ("never").

    Naive values are UTC (the jobruns sample pairs ``11:14:34+05:30`` with ``05:44:42`` for an
    8-second run), never the local time of the machine. Fractions beyond microseconds are truncated.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return None if parsed.year <= 1 else parsed.astimezone(timezone.utc)
    if not isinstance(value, str):
        raise ValueError(f"expected a DateTime string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        return None
    wcf = _WCF_RE.match(text)
    if wcf:
        try:
            parsed = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=int(wcf.group("ms")))
        except OverflowError:
            # pydantic turns only ValueError into a validation error; anything else would escape the parser.
            raise ValueError(f"{value!r} is out of the DateTime range") from None
        return None if parsed.year <= 1 else parsed
    match = _ISO_RE.match(text)
    if not match:
        raise ValueError(f"{value!r} is not a DateTime")
    year = int(match.group("date")[:4])
    if year <= 1:
        return None
    frac = (match.group("frac") or "0")[:6].ljust(6, "0")
    try:
        naive = datetime.fromisoformat(
            f"{match.group('date')}T{match.group('h')}:{match.group('m')}:{match.group('s') or '00'}"
        ).replace(microsecond=int(frac))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a DateTime ({exc})") from None
    offset = _parse_utc_offset(match.group("tz"))
    if offset is None:
        raise ValueError(f"{value!r} has an invalid UTC offset")
    try:
        return naive.replace(tzinfo=timezone(offset)).astimezone(timezone.utc)
    except OverflowError:
        # 9999-12-31T23:00:00-08:00 is past datetime.max in UTC; only ValueError becomes a validation error.
        raise ValueError(f"{value!r} is out of the DateTime range") from None


def _parse_utc_offset(tz: str | None) -> timedelta | None:
    """``+05:30``/``-0800``/``Z`` as a timedelta (no suffix is UTC); ``None`` when out of range."""
    if tz is None or tz in ("Z", "z"):
        return timedelta(0)
    sign = -1 if tz[0] == "-" else 1
    digits = tz[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or "0")
    if hours > 23 or minutes > 59:
        return None
    return sign * timedelta(hours=hours, minutes=minutes)


def ccs_utc_offset(value: Any) -> timedelta | None:
    """The UTC offset a CCS DateTime string was written in (zero when it has none); ``None`` if unreadable."""
    if isinstance(value, datetime):
        return value.utcoffset() or timedelta(0)
    if not isinstance(value, str):
        return None
    text = value.strip()
    match = _ISO_RE.match(text) or _WCF_RE.match(text)
    return None if match is None else _parse_utc_offset(match.group("tz"))


def _none_to_list(value: Any) -> Any:
    return [] if value is None else value


def _json_type_name(value: Any) -> str:
    """A JSON value's type as a log line names it: "a string", "a number", "a list"..."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "a value of another kind"


def _none_to_false(value: Any) -> Any:
    return False if value is None else value


def _none_to_zero(value: Any) -> Any:
    return 0 if value is None else value


CcsDateTime = Annotated[datetime | None, BeforeValidator(parse_ccs_datetime)]
CcsList = Annotated[list[Any], BeforeValidator(_none_to_list)]
CcsBool = Annotated[bool, BeforeValidator(_none_to_false)]
CcsInt = Annotated[int, BeforeValidator(_none_to_zero)]


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
        return _json_type_name(self._sent_instead[0])

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
    AssetsResolutionInfo: Annotated[list[AssetResolutionInfo], BeforeValidator(_none_to_list)] = Field(
        default_factory=list
    )
    Standards: Annotated[list[str], BeforeValidator(_none_to_list)] = Field(default_factory=list)

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
    JobMessages: Annotated[list[JobMessage], BeforeValidator(_none_to_list)] = Field(default_factory=list)

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
    JobStatusInfo: Annotated[list[JobRun], BeforeValidator(_none_to_list)] = Field(default_factory=list)

    def newest_first(self) -> list[JobRun]:
        """Runs ordered newest first by start time; runs without a start keep their place at the end.

        The pages do not say how ``JobStatusInfo`` is ordered, so we never rely on it.
        """
        started = [run for run in self.JobStatusInfo if run.JobStartTime is not None]
        unstarted = [run for run in self.JobStatusInfo if run.JobStartTime is None]
        started.sort(key=lambda run: run.JobStartTime or datetime.min, reverse=True)
        return started + unstarted


# --- What we send: strict models of the create and update bodies -----------------------------------

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

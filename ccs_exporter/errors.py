"""The error hierarchy of ccs-exporter: one root for CCS failures, one for bad local input.

Nothing above the client sees a ``requests`` exception: the client raises these, ``from`` the cause.
No message here ever holds a token or a password: the client builds messages from the method, the
path (job ids only, never a query string with credentials) and the server's own ``Message`` field.
"""

from __future__ import annotations

from typing import ClassVar


class CcsError(Exception):
    """A request to CCS failed: refused by the server, unreachable, or answered with a bad body.

    ``kind`` is a short, stable name for the failure (logs, poll state changes); ``status_code`` is the
    HTTP status a subclass stands for, if one.
    """

    kind: ClassVar[str] = "ccs_error"
    status_code: ClassVar[int | None] = None

    def __init__(self, message: str, *, method: str = "", path: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.path = path
        self.status = status

    def __str__(self) -> str:
        where = f"{self.method} {self.path}".strip()
        status = f" -> {self.status}" if self.status is not None else ""
        prefix = f"{where}{status}: " if where else ""
        return f"{prefix}{self.message}"

    @classmethod
    def from_status(cls, status: int, message: str, *, method: str = "", path: str = "") -> CcsError:
        """The error for an HTTP error status: 400, 401, 403 and 404 by class, 5xx a ServerError."""
        error_type: type[CcsError] = ServerError if status >= 500 else CcsError
        for subclass in (BadRequestError, AuthError, ForbiddenError, NotFoundError):
            if subclass.status_code == status:
                error_type = subclass
        return error_type(message, method=method, path=path, status=status)


class BadRequestError(CcsError):
    """400: bad job id, bad body, duplicate job name or unsupported job type."""

    kind = "bad_request"
    status_code = 400


class AuthError(CcsError):
    """401, or a failed login: missing, invalid or expired token, or wrong credentials."""

    kind = "auth"
    status_code = 401


class ForbiddenError(CcsError):
    """403: the account may not do this (a system job, another owner's job, a missing permission)."""

    kind = "forbidden"
    status_code = 403


class NotFoundError(CcsError):
    """404: the job does not exist."""

    kind = "not_found"
    status_code = 404


class ServerError(CcsError):
    """5xx: CCS failed while serving the request."""

    kind = "server_error"


class UnavailableError(CcsError):
    """CCS could not be reached or did not answer in time.

    ``sent`` says whether the request may have reached the server: False for a refused connection or
    a connect timeout (nothing was sent), True for a read timeout or a connection dropped mid-response,
    where a mutation's outcome is unknown.
    """

    kind = "unavailable"

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        status: int | None = None,
        sent: bool = False,
    ) -> None:
        super().__init__(message, method=method, path=path, status=status)
        self.sent = sent


class CcsTimeoutError(UnavailableError):
    """CCS did not answer within the request timeout."""

    kind = "timeout"


class BadResponseError(CcsError):
    """CCS answered with a status we accept but a body we cannot use (not JSON, wrong shape)."""

    kind = "bad_response"


class ConfigError(Exception):
    """A setting, a command-line value or a job spec is invalid; the message names the field."""

    def __init__(self, message: str, *, field: str = "", problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.field = field
        # Every problem found, one line each, when there were several (settings are checked whole, so
        # one run shows all of them); the message joins them for logs.
        self.problems = problems or (message,)

    @classmethod
    def of(cls, problems: list[tuple[str, str]]) -> ConfigError:
        """One error for several (message, field) problems; its field is the first one's."""
        lines = tuple(message for message, _ in problems)
        return cls("; ".join(lines), field=problems[0][1], problems=lines)


class AuditError(Exception):
    """The audit log could not be written; a mutation that needs the record must not go ahead."""


class MutationInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a mutation after its intent was recorded; its result has been written.

    ``message`` says on one line what is known (sent or not, the new JobID if CCS answered) and
    ``outcome`` is the outcome recorded (``success``, ``failure`` or ``unknown``; None if the result
    could not be written). It is a ``KeyboardInterrupt``, so callers that stop on Ctrl-C still stop.
    """

    def __init__(self, message: str, *, outcome: str | None, audit_id: str) -> None:
        super().__init__(message)
        self.message = message
        self.outcome = outcome
        self.audit_id = audit_id


class WitnessError(Exception):
    """The witness of the audit log (a Prometheus) could not be asked, or its answer cannot be used."""

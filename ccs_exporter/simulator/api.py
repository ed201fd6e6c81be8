"""The simulated CCS REST API: routing, the token endpoint, the job endpoints and the control API.

Job endpoints: search by id, jobruns, create, update, delete, Search Jobs and search by name (both
``GET /Jobs``), and run/abort (``POST /jobs/{id}``).

Paths and query keys match case-insensitively and trailing slashes are ignored, as on CCS's IIS.
Every answer is JSON; errors carry ``{"Message": ...}`` (token errors use OAuth's ``{"error": ...}``).
Messages never contain a password or a token.
"""

from __future__ import annotations

import base64
import json
import random
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

from ccs_exporter.models import normalize_guid
from ccs_exporter.simulator.faults import Faults, RequestLog, RequestRecord
from ccs_exporter.simulator.jobs import JobStore
from ccs_exporter.simulator.search import SearchError, paging_value, parse_expression
from ccs_exporter.simulator.server import HttpRequest, HttpResponse
from ccs_exporter.simulator.tokens import TokenStore
from ccs_exporter.simulator.validation import NULL_UPDATE, PARSE_ERROR, ApiError

API_PREFIX = ("ccs", "api", "v1")
CONTROL_PREFIX = "_simulator"
INVALID_JOB_ID = "JobID is invalid."
SERVER_ERROR = (
    "Server encountered an error while serving request. Please contact administrator if problem persists."
)
# ASP.NET Web API's own wording for a refused bearer token and for binding failures.
UNAUTHORIZED = "Authorization has been denied for this request."
BAD_QUERY = "The request is invalid."

_JSON = "application/json; charset=utf-8"


def json_response(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    try:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # text with a lone surrogate: escaped ("\udcff"), as a .NET server sends it
        body = json.dumps(payload, separators=(",", ":")).encode("ascii")
    return HttpResponse(status, body, _JSON, headers)


def message_response(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    return json_response(status, {"Message": message}, headers)


NO_CONTENT = HttpResponse(204)


class Route:
    """Where a request goes: the endpoint template and the job id segment, if any."""

    __slots__ = ("endpoint", "job_id", "path", "query", "segments")

    def __init__(self, request: HttpRequest) -> None:
        raw_path, _, raw_query = request.target.partition("?")
        self.path = unquote(raw_path)
        # Query keys are case-insensitive; the first value of a repeated key wins.
        self.query: dict[str, str] = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            self.query.setdefault(key.lower(), value)
        self.segments = [segment for segment in self.path.split("/") if segment]
        self.job_id = ""
        self.endpoint = self._endpoint(request.method, [segment.lower() for segment in self.segments])

    def _endpoint(self, method: str, lower: list[str]) -> str:
        if lower[:1] == [CONTROL_PREFIX]:
            return "control"
        if tuple(lower[:3]) != API_PREFIX:
            return "unknown"
        rest = lower[3:]
        if rest == ["oauth", "tokens"] and method == "POST":
            return "token"
        if rest == ["jobs"]:
            if method == "GET":
                # Search Jobs and search by name share the path; Attributes decides, as it is mandatory.
                return (
                    "search_job_name"
                    if "jobname" in self.query and "attributes" not in self.query
                    else "search_jobs"
                )
            return {"POST": "create_job", "PATCH": "update_job", "DELETE": "delete_job"}.get(
                method, "unknown"
            )
        if len(rest) == 2 and rest[0] == "jobs" and method in ("GET", "POST"):
            self.job_id = self.segments[4]
            return "job" if method == "GET" else "job_operation"
        if len(rest) == 3 and rest[0] == "jobs" and rest[2] == "jobruns" and method == "GET":
            self.job_id = self.segments[4]
            return "jobruns"
        return "unknown"


class CcsApi:
    """Answers one HTTP request as CCS would, applying the injected faults; records every request."""

    def __init__(
        self,
        *,
        username: str,
        password: str,
        password_encoding: str,
        store: JobStore,
        tokens: TokenStore,
        faults: Faults,
        log: RequestLog,
        stopping: threading.Event,
        seed: int,
        control: Callable[[str, str, list[str], Any], HttpResponse],
    ) -> None:
        self._username = username
        expected = password
        if password_encoding == "base64":
            expected = base64.b64encode(password.encode("utf-8")).decode("ascii")
        self._expected_password = expected
        self._store = store
        self._tokens = tokens
        self._faults = faults
        self._log = log
        self._stopping = stopping
        self._fault_rng = random.Random(seed ^ 0x5EED)
        self._fault_lock = threading.Lock()
        self._control = control

    def handle(self, request: HttpRequest) -> HttpResponse | None:
        generation = self._log.generation
        route = Route(request)
        response = self._answer(request, route)
        status = 0 if response is None else response.status
        self._log.add(RequestRecord(request.method, route.path, route.endpoint, status), generation)
        return response

    # --- faults ------------------------------------------------------------------------------------

    def _answer(self, request: HttpRequest, route: Route) -> HttpResponse | None:
        if route.endpoint == "control":
            return self._control_answer(request, route)
        faults = self._faults
        if faults.latency_seconds > 0 and self._stopping.wait(faults.latency_seconds):
            return None
        while faults.hang:
            if self._stopping.wait(0.02):
                return None
        gated = route.endpoint != "token" or faults.token_errors
        if gated and faults.drop_connections:
            return None
        if gated and faults.error_rate > 0:
            with self._fault_lock:
                failing = self._fault_rng.random() < faults.error_rate
            if failing:
                return message_response(500, SERVER_ERROR)
        response = self._dispatch(request, route)
        if gated and faults.malformed_json and response.status == 200 and response.body:
            # Cut the body short: the JSON is invalid, Content-Length still matches what is sent.
            return HttpResponse(200, response.body[: max(1, len(response.body) // 2)], response.content_type)
        return response

    # --- endpoints ---------------------------------------------------------------------------------

    def _dispatch(self, request: HttpRequest, route: Route) -> HttpResponse:
        if route.endpoint == "unknown":
            return message_response(
                404, f"No HTTP resource was found that matches the request URI '{route.path}'."
            )
        if route.endpoint == "token":
            return self._token(request)
        if route.endpoint in ("search_jobs", "search_job_name") and self._faults.search_unsupported:
            return message_response(
                404, f"No HTTP resource was found that matches the request URI '{route.path}'."
            )
        user = self._authenticated_user(request)
        if user is None:
            return message_response(401, UNAUTHORIZED, (("WWW-Authenticate", "Bearer"),))
        try:
            if route.endpoint == "job":
                return json_response(200, self._store.job_payload(_job_id(route.job_id)))
            if route.endpoint == "jobruns":
                return self._job_runs(route)
            if route.endpoint == "create_job":
                job_id = self._store.create(_json_body(request), owner=user)
                return json_response(200, {"JobID": job_id})
            if route.endpoint == "update_job":
                return self._update(request)
            if route.endpoint == "search_jobs":
                return self._search(route)
            if route.endpoint == "search_job_name":
                return self._search_by_name(route)
            if route.endpoint == "job_operation":
                return self._operation(request, route, user)
            return self._delete(route, user)
        except ApiError as exc:
            return message_response(exc.status, exc.message)
        except SearchError as exc:
            return message_response(400, str(exc))

    def _authenticated_user(self, request: HttpRequest) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self._tokens.user_for(token.strip())

    def _token(self, request: HttpRequest) -> HttpResponse:
        # Parsed as a form whatever the Content-Type says: the vendor samples send the form as
        # "application/json". An unescaped "+" in the body therefore arrives as a space.
        form: dict[str, str] = {}
        for key, value in parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True):
            form.setdefault(key.lower(), value)
        grant = form.get("grant_type", "")
        if grant == "password":
            if self._faults.reject_logins or not self._credentials_match(form):
                return _oauth_error("invalid_grant", "The user name or password is incorrect.")
            return json_response(200, self._tokens.issue(self._username))
        if grant == "refresh_token":
            answer = self._tokens.refresh(form.get("refresh_token", ""))
            if answer is None:
                return _oauth_error("invalid_grant", "The refresh token is invalid or has expired.")
            return json_response(200, answer)
        return _oauth_error("unsupported_grant_type", "The grant type is not supported.")

    def _credentials_match(self, form: dict[str, str]) -> bool:
        # Windows account names compare case-insensitively; the password exactly.
        return (
            form.get("username", "").casefold() == self._username.casefold()
            and form.get("password") == self._expected_password
        )

    def _job_runs(self, route: Route) -> HttpResponse:
        job_id = _job_id(route.job_id)
        count_text = route.query.get("count", "1").strip() or "1"
        show_text = route.query.get("showmessages", "false").strip().lower() or "false"
        if not count_text.isdigit() or show_text not in ("true", "false"):
            raise ApiError(400, BAD_QUERY)
        return json_response(200, self._store.runs_payload(job_id, int(count_text), show_text == "true"))

    def _update(self, request: HttpRequest) -> HttpResponse:
        body = _json_body(request)
        if not isinstance(body, dict):
            raise ApiError(400, PARSE_ERROR)
        fields = {str(key).lower(): value for key, value in body.items()}
        raw_id, details = fields.get("jobid"), fields.get("jobdetails")
        if raw_id is None or details is None:
            raise ApiError(400, NULL_UPDATE)
        if not isinstance(raw_id, str):
            raise ApiError(400, INVALID_JOB_ID)
        self._store.update(_job_id(raw_id), details)
        return NO_CONTENT

    def _search(self, route: Route) -> HttpResponse:
        conditions = parse_expression(route.query.get("attributes"))
        page = paging_value(route.query, "page", default=0, minimum=0)
        cap = self._faults.search_page_size_cap
        size = min(paging_value(route.query, "pagesize", default=cap, minimum=1), cap)
        if self._faults.search_ignores_page:
            page = 0
        return json_response(200, self._store.search(conditions, page, size))

    def _search_by_name(self, route: Route) -> HttpResponse:
        name = route.query.get("jobname", "")
        if not name.strip():
            raise ApiError(400, "Invalid input data. jobname is mandatory.")
        return json_response(200, self._store.search_by_name(name))

    def _operation(self, request: HttpRequest, route: Route, user: str) -> HttpResponse:
        target = _job_id(route.job_id)
        body = _json_body(request)
        if not isinstance(body, dict):
            raise ApiError(400, PARSE_ERROR)
        operation = {str(key).lower(): value for key, value in body.items()}.get("operation")
        if not isinstance(operation, str) or not operation.strip():
            raise ApiError(400, "Invalid input data. Operation is mandatory: execute or abort.")
        name = operation.strip().lower()
        if name == "execute":
            job, run = self._store.execute(target)
            message = "Job run queued."
        elif name == "abort":
            job, run = self._store.abort(target, user)
            message = "Job run aborted."
        else:
            raise ApiError(
                400, f"Invalid input data. Operation {operation!r} is not supported; use execute or abort."
            )
        status = self._faults.operation_status
        if status != 200:
            return HttpResponse(status)
        answer = {"JobID": job.job_id, "JobRunID": run.run_id, "Status": run.status, "Message": message}
        return json_response(200, answer)

    def _delete(self, route: Route, user: str) -> HttpResponse:
        job_id = _job_id(route.query.get("jobid", ""))
        flag = route.query.get("deletejob", "true").strip().lower() or "true"
        if flag not in ("true", "false"):
            raise ApiError(400, BAD_QUERY)
        self._store.delete(job_id, flag == "true", user)
        return NO_CONTENT

    # --- control -----------------------------------------------------------------------------------

    def _control_answer(self, request: HttpRequest, route: Route) -> HttpResponse:
        try:
            body = json.loads(request.body) if request.body.strip() else {}
        except ValueError:
            return json_response(400, {"error": "body is not JSON"})
        try:
            return self._control(request.method, route.path, route.segments[1:], body)
        except ApiError as exc:
            return json_response(exc.status, {"error": exc.message})


def _job_id(text: str) -> str:
    try:
        return normalize_guid(text)
    except ValueError:
        raise ApiError(400, INVALID_JOB_ID) from None


def _json_body(request: HttpRequest) -> Any:
    try:
        return json.loads(request.body.decode("utf-8-sig"))
    except ValueError:
        raise ApiError(400, PARSE_ERROR) from None


def _oauth_error(error: str, description: str) -> HttpResponse:
    return json_response(400, {"error": error, "error_description": description})

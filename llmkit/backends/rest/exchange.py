"""One call of the ``rest`` backend across its replicas, without the I/O.

The backend's sync and async methods only send and read; everything they decide lives here
and is shared by both:

* :meth:`Shell.attempts` walks the replicas of one call: each :class:`Attempt` names a
  replica, the URL and httpx's budgets for it (capped by the call's deadline);
* used as a context manager, an attempt releases its replica and turns a failure into the
  llmkit error: a connection error or 5xx puts the replica in cool-down and, when failover
  is allowed, ends the ``with`` block quietly so that the driver's loop tries the next
  replica; anything else is raised as the typed error;
* :meth:`Attempt.reply` reads a whole reply; :meth:`Attempt.opened`, :meth:`Attempt.feed`
  and :meth:`Attempt.finish` read a stream (the total budget, the parser, the request id).

A driver is therefore::

    for attempt in shell.attempts(call, request):
        with attempt:
            return attempt.reply(client.post(attempt.url, json=call.payload, timeout=attempt.timeout))
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from ..._http import allow_stream_gaps, at_deadline, httpx_timeout, map_transport_error
from ...errors import (
    ConnectionError,
    ProtocolError,
    ProviderError,
    TimeoutError,
    error_from_status,
    redact,
)
from ...streaming import with_request_id
from ...timeouts import Timeout
from ...types import ChatRequest, CompletionRequest, EmbeddingRequest, StreamEvent
from ..base import check_json_extra
from .replicas import Replica, ReplicaHealth, ReplicaSet
from .wire import BACKEND, StreamParser, WireCall, trim

__all__ = ["Attempt", "Probe", "Shell"]

logger = logging.getLogger("llmkit.rest")

AnyRequest = ChatRequest | CompletionRequest | EmbeddingRequest
_INF = float("inf")
# Transport failures that say "this replica is unreachable or dropped us": worth another
# replica. A read timeout is not among them: the replica may just be slow, and trying the
# next one would spend the same budget again.
_REPLICA_FAILURES = (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ConnectTimeout)
_FAILURES = (httpx.RequestError, ProviderError)


@dataclass
class Shell:
    """What every call of one backend shares: the replicas, the labels and secrets its
    errors carry, and the httpx budgets already converted."""

    model: str
    spec: str
    replicas: ReplicaSet
    secrets: tuple[str, ...]
    failover: bool
    _timeouts: dict[Timeout, httpx.Timeout] = field(default_factory=dict)

    def attempts(
        self, call: WireCall, request: AnyRequest, *, late_is_total: bool = False
    ) -> Iterator[Attempt]:
        """The attempts of one call: the next one only after the previous one failed over.

        ``late_is_total``: a transport timeout at the call's deadline is reported as the
        total timeout (the async clients, whose httpx budgets are capped by the deadline;
        the sync ones name the budget that ran out themselves)."""
        check_json_extra(BACKEND, request.extra)
        tried: list[Replica] = []
        while True:
            timeout = self.timeout(request)  # raises once the deadline has passed
            replica = self.replicas.acquire(tried)
            if replica is None:  # pragma: no cover - fail_over checks before another attempt
                raise RuntimeError("no replica left to try")
            tried.append(replica)
            logger.debug("rest: POST %s", replica.display)
            attempt = Attempt(self, call, request, replica, tried, timeout, late_is_total)
            attempt.url = call.url(replica)
            if call.stream:
                attempt.streamed()
            yield attempt
            if not attempt.again:
                return

    # -- budgets ---------------------------------------------------------------------------

    def timeout(self, request: AnyRequest) -> httpx.Timeout:
        """This attempt's httpx budgets: the request's phases, capped by its deadline."""
        t = request.timeout
        remaining = request.remaining()
        if remaining is None:
            return self._converted(t)
        if remaining <= 0:
            raise TimeoutError(
                "the call's deadline passed before the request was sent",
                backend=BACKEND,
                model=self.model,
            )
        # Capping by ``remaining`` changes nothing while every httpx budget (each phase,
        # itself capped by ``total``) still fits: then the shared conversion does.
        if remaining >= min(max(t.connect, t.read), t.total):
            return self._converted(t)
        return httpx_timeout(
            Timeout(
                connect=min(t.connect, remaining),
                first_token=min(t.first_token, remaining),
                idle=min(t.idle, remaining),
                total=min(t.total, remaining),
            )
        )

    def _converted(self, t: Timeout) -> httpx.Timeout:
        # Most calls share a handful of Timeout values; converting them is not free.
        cached = self._timeouts.get(t)
        if cached is None:
            cached = self._timeouts[t] = httpx_timeout(t)
            if len(self._timeouts) > 64:
                self._timeouts.clear()
        return cached

    def total_timeout(self, request: AnyRequest, what: str = " while streaming") -> TimeoutError:
        return TimeoutError(
            f"total timeout of {request.timeout.total:g}s (or the call's deadline) exceeded{what}",
            backend=BACKEND,
            model=self.model,
        )

    # -- errors ----------------------------------------------------------------------------

    def own(self, err: ProviderError) -> ProviderError:
        """``err`` labelled as this backend's, with the key redacted from what it quotes."""
        if err.backend is None or err.backend == self.spec:
            err.backend = BACKEND
        if err.model is None:
            err.model = self.model
        if self.secrets:  # error text parsed from a reply may echo the key back
            err.message = redact(err.message, self.secrets)
            err.args = (err.message,)
            if err.body is not None:
                err.body = json.loads(redact(json.dumps(err.body, default=str), self.secrets))
        return err

    def failure(self, exc: Exception, replica: Replica) -> tuple[ProviderError, bool]:
        """``exc`` as an llmkit error, and whether it is the replica's fault (fail over)."""
        if isinstance(exc, ProviderError):
            status = exc.status_code
            if isinstance(exc, ConnectionError):  # a stream cut short by the replica
                return self.own(exc), True
            return self.own(exc), status is not None and status >= 500 and status != 501
        if isinstance(exc, httpx.DecodingError):  # e.g. a corrupt gzip body: not transient
            text = redact(str(exc), self.secrets)
            return ProtocolError(
                f"undecodable reply: {text}", backend=BACKEND, model=self.model
            ), False
        err = map_transport_error(exc, backend=BACKEND, model=self.model, secrets=self.secrets)
        err.message = f"{err.message} (replica {replica.display})"
        return err, isinstance(exc, _REPLICA_FAILURES)

    def status_error(self, response: httpx.Response, replica: Replica) -> ProviderError:
        content = response.content
        try:
            body: Any = json.loads(content)
        except ValueError:
            body = content.decode("utf-8", "replace")
        err = error_from_status(
            response.status_code,
            body,
            response.headers,
            backend=BACKEND,
            model=self.model,
            secrets=self.secrets,
        )
        if len(self.replicas) > 1:
            err.message = f"{err.message} (replica {replica.display})"
        return err

    def fail_over(
        self, replica: Replica, tried: list[Replica], err: ProviderError, *, allowed: bool
    ) -> bool:
        """Put ``replica`` in cool-down; whether the call should try another replica."""
        self.replicas.failed(replica)
        again = allowed and self.failover and len(tried) < len(self.replicas)
        logger.warning(
            "rest: replica %s failed (%s); cooling down for %gs%s",
            replica.display,
            type(err).__name__,
            self.replicas.cooldown,
            ", trying the next replica" if again else "",
        )
        return again


@dataclass(slots=True)
class Attempt:
    """One HTTP exchange with one replica (see the module docstring)."""

    shell: Shell
    call: WireCall
    request: AnyRequest
    replica: Replica
    tried: list[Replica]
    timeout: httpx.Timeout
    late_is_total: bool
    url: str = ""
    again: bool = False  # set when the attempt failed over: the driver loops
    yielded: bool = False  # an event reached the caller: a stream is never replayed
    done: bool = False
    request_id: str | None = None
    parser: StreamParser = field(init=False)
    _end: float | None = field(init=False)

    def streamed(self) -> None:
        """Ready to read a streamed reply: a fresh parser, and the time by which the
        body must be over (httpx has no total budget for a stream's body: each chunk is
        checked against the end of the call's total budget, from the send, or its deadline)."""
        self.parser = self.call.new_parser()
        request = self.request
        total = request.timeout.total
        end = time.monotonic() + total if total != _INF else None
        deadline = request.deadline
        if deadline is not None and (end is None or deadline < end):
            end = deadline
        self._end = end

    def build(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        """The streamed request (sent with ``client.send(..., stream=True)``)."""
        return client.build_request("POST", self.url, json=self.call.payload, timeout=self.timeout)

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        shell = self.shell
        shell.replicas.release(self.replica)
        if not isinstance(exc, _FAILURES):
            return False  # success, or not ours to translate (cancellation, a bug)
        # httpx's budgets are capped by the deadline (see Shell.timeout): when that is what
        # ran out, say so, rather than name the phase httpx was in.
        late = self.late_is_total and isinstance(exc, httpx.TimeoutException)
        if late and at_deadline(self.request):
            raise shell.total_timeout(self.request, "") from exc
        err, replica_failed = shell.failure(exc, self.replica)
        # After an event reached the caller the replica is still put in cool-down, but the
        # error surfaces: a stream is never replayed behind the caller's back.
        if replica_failed and shell.fail_over(
            self.replica, self.tried, err, allowed=not self.yielded
        ):
            self.again = True
            return True
        if err is exc:
            return False
        raise err from exc

    # -- a whole reply ---------------------------------------------------------------------

    def reply(self, response: httpx.Response) -> Any:
        """The parsed reply (a typed error for an error status or a malformed body)."""
        if response.status_code >= 400:
            raise self.shell.status_error(response, self.replica)
        self.shell.replicas.succeeded(self.replica)
        content = response.content
        try:
            data = json.loads(content)
        except ValueError:
            text = content.decode("utf-8", "replace")
            raise ProtocolError(
                f"reply is not JSON: {trim(text)!r}", backend=BACKEND, model=self.shell.model
            ) from None
        headers = response.headers
        try:
            parsed = self.call.parse(data, headers)
        except ProviderError as err:
            self.shell.own(err)
            raise
        parsed.request_id = headers.get("x-request-id")
        return parsed

    # -- a stream --------------------------------------------------------------------------

    def opened(self, response: httpx.Response) -> None:
        """The stream's headers are in (an error status's body already read)."""
        if response.status_code >= 400:
            raise self.shell.status_error(response, self.replica)
        self.shell.replicas.succeeded(self.replica)
        self.request_id = response.headers.get("x-request-id")
        request = self.request
        allow_stream_gaps(response, request.timeout, request.remaining())

    def feed(self, data: bytes) -> list[StreamEvent]:
        """The events completed by a chunk of the body; sets ``done`` at the end marker."""
        end = self._end
        if end is not None and time.monotonic() > end:
            raise self.shell.total_timeout(self.request)
        parser = self.parser
        events = parser.feed(data)
        if events:
            self.yielded = True
        self.done = parser.done
        return events

    def finish(self) -> list[StreamEvent]:
        """The closing events, once the body has ended (a cut-short body raises)."""
        events = with_request_id(self.parser.finish(), self.request_id)
        self.yielded = True
        return events


class Probe:
    """The health probes of one replica, without the I/O: ``GET /health``, then the models
    list where ``/health`` is not served (404/405). The driver asks :meth:`next_url`, reports
    each outcome to :meth:`answered` and reads :meth:`health` at the end."""

    def __init__(self, shell: Shell, replica: Replica) -> None:
        self.shell = shell
        self.replica = replica
        models = replica.api + "/models"
        self._todo = [
            (replica.root + "/health", "/health"),
            (models, models[len(replica.root) :] or models),
        ]
        self._endpoint = ""
        self._status: int | None = None
        self._error: str | None = None
        self._latency = 0.0
        self._started = 0.0

    def next_url(self) -> str | None:
        """The URL to probe next; ``None`` once the outcome is known."""
        if not self._todo or (self._endpoint and self._status not in (404, 405)):
            return None
        url, self._endpoint = self._todo.pop(0)
        self._started = time.perf_counter()
        return url

    def answered(self, outcome: int | Exception) -> None:
        """The status code the probe got, or the transport error it failed with."""
        self._latency = time.perf_counter() - self._started
        if isinstance(outcome, Exception):
            shell = self.shell
            error = map_transport_error(
                outcome, backend=BACKEND, model=shell.model, secrets=shell.secrets
            )
            self._status, self._error = None, str(error)
        else:
            self._status, self._error = outcome, None

    def health(self) -> ReplicaHealth:
        """The replica's health from the last probe; it leaves or enters cool-down."""
        replicas, replica = self.shell.replicas, self.replica
        endpoint, status, error = self._endpoint, self._status, self._error
        healthy = status is not None and 200 <= status < 300
        if healthy:
            replicas.succeeded(replica)
        else:
            if error is None:
                error = f"{endpoint} answered {status}"
            if status is None or status >= 500:
                replicas.failed(replica)
        return ReplicaHealth(
            url=replica.display,
            healthy=healthy,
            endpoint=endpoint if status is not None else None,
            status_code=status,
            latency_s=self._latency,
            error=None if healthy else error,
            cooling_down=replicas.cooling_down(replica),
            in_flight=replica.in_flight,
        )

"""MogplexClient: typed async methods over the Mogplex v1 runs API, all sharing one request loop."""

from __future__ import annotations

import logging
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import httpx2
from pydantic import ValidationError

from mogplex_mcp.api.bodies import DEFAULT_MAX_BODY_BYTES, read_capped
from mogplex_mcp.api.calls import (
    API_PREFIX,
    Call,
    bare_token,
    normalize_base_url,
    out_of_time,
    run_from,
    run_path,
)
from mogplex_mcp.api.errors import (
    ApiStatusError,
    AuthenticationError,
    MissingTokenError,
    TransportError,
    UpstreamTimeoutError,
    envelope_data,
    error_from_transport,
    redirect_error,
    shape_error,
)
from mogplex_mcp.api.limits import UpstreamGate
from mogplex_mcp.api.models import (
    EVENTS_LIMIT_MAX,
    REPOS_LIMIT_MAX,
    CancelResult,
    EventPage,
    Repo,
    RepoList,
    RunDetail,
    StartedRun,
    StartRunRequest,
    checked_idempotency_key,
    checked_limit,
    checked_uuid,
)
from mogplex_mcp.api.pool import DEFAULT_TIMEOUT, USER_AGENT, cut_timeout, make_http_client, new_pool
from mogplex_mcp.api.redirects import adopt_apex, learned_base
from mogplex_mcp.api.retry import RetryPolicy, next_delay
from mogplex_mcp.config import TOKEN_ENV, Settings, mask_token

__all__ = ["API_PREFIX", "USER_AGENT", "MogplexClient", "make_http_client"]

logger = logging.getLogger("mogplex_mcp.api")

T = TypeVar("T")
_TOKEN_SHAPE = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: all a bearer header can carry
_UNSET: Any = object()


class MogplexClient:
    """Async client for one user's token. Cheap to make; share the `http` pool between them.

    Every call accepts `deadline`, an absolute time on the injected `clock`: no attempt's timeout reaches
    past it and no retry sleep ends after it. The policy's `budget_seconds` bounds each call the same way;
    whichever comes first wins. Running out before a request is sent raises UpstreamTimeoutError; running
    out between attempts re-raises the last failure (it says more than "timed out" would).

    A shared `gate` (UpstreamGate) gives the token its fair share of the upstream and remembers a 401;
    no answer body is read past `max_body_bytes`.
    """

    def __init__(
        self,
        *,
        base_url: str,
        token: str | None,
        http: httpx2.AsyncClient | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        gate: UpstreamGate | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        if http is not None and transport is not None:
            raise ValueError("pass either a shared `http` pool or a `transport`, not both")
        self._base_url = normalize_base_url(base_url)
        self._token = bare_token(token)
        self._owns_http = http is None
        self._http = http if http is not None else new_pool(DEFAULT_TIMEOUT, transport)
        self._retry = retry if retry is not None else RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()  # jitter, not secrets
        self._request_count = 0
        self._gate = gate
        self._max_body_bytes = max_body_bytes

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        token: str | None = _UNSET,
        http: httpx2.AsyncClient | None = None,
        **kw: Any,
    ) -> MogplexClient:
        """A client configured by `settings`; `token` defaults to `settings.token`."""
        if kw.get("retry") is None:
            kw["retry"] = RetryPolicy.from_settings(settings)
        kw.setdefault("max_body_bytes", settings.max_response_bytes)
        transport = kw.pop("transport", None)
        owned = http is None
        if owned:
            http = make_http_client(settings, transport=transport)
        elif transport is not None:
            raise ValueError("pass either a shared `http` pool or a `transport`, not both")
        client = cls(
            base_url=settings.base_url,
            token=settings.token if token is _UNSET else token,
            http=http,
            **kw,
        )
        client._owns_http = owned
        return client

    def __repr__(self) -> str:
        return f"MogplexClient(base_url={self._base_url!r}, token={mask_token(self._token)})"

    __str__ = __repr__

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pool if this client made it; a shared pool belongs to whoever passed it in."""
        if self._owns_http:
            await self._http.aclose()

    @property
    def request_count(self) -> int:
        """HTTP requests this client has sent (each retry and each followed redirect counts)."""
        return self._request_count

    @property
    def base_url(self) -> str:
        return self._learned_base()

    # --- the API -------------------------------------------------------------------------------

    async def list_repos(
        self,
        *,
        query: str | None = None,
        repo_id: str | None = None,
        limit: int | None = None,
        deadline: float | None = None,
    ) -> list[Repo]:
        """Repositories the token can start runs in, sorted by full name (`repo_id` wins over `query`)."""
        params: dict[str, str] = {}
        if query is not None and query.strip():
            params["q"] = query.strip()
        if repo_id is not None:
            params["id"] = checked_uuid(repo_id, "repo_id", "a repository id from list_repos")
        if limit is not None:
            params["limit"] = str(checked_limit(limit, REPOS_LIMIT_MAX))
        call = Call("GET", "/repos", params=params)
        repos = await self._call(call, RepoList.model_validate, deadline)
        return repos.repos

    async def start_run(
        self,
        request: StartRunRequest,
        *,
        idempotency_key: str | None = None,
        deadline: float | None = None,
    ) -> StartedRun:
        """Start a run. One Idempotency-Key per call, the same on every retry; the caller's key wins."""
        key = checked_idempotency_key(idempotency_key) if idempotency_key is not None else str(uuid.uuid4())
        call = Call("POST", "/runs", body=request.to_wire(), headers={"Idempotency-Key": key})

        def parse(data: Any) -> tuple[RunDetail, bool]:
            return run_from(data), isinstance(data, dict) and data.get("replayed") is True

        failures: list[str] = []
        (run, replayed), attempts = await self._call_counted(call, parse, deadline, failures)
        return StartedRun(
            run=run,
            replayed=replayed,
            idempotency_key=key,
            attempts=attempts,
            retried_after=failures[-1] if failures else None,
        )

    async def get_run(self, run_id: str, *, deadline: float | None = None) -> RunDetail:
        call = Call("GET", run_path(run_id))
        return await self._call(call, run_from, deadline)

    async def list_events(self, run_id: str, *, limit: int | None = None, deadline: float | None = None) -> EventPage:
        """The run and its first `limit` events, oldest first (the API has no cursor)."""
        path = run_path(run_id, "events")
        params = {"limit": str(checked_limit(limit, EVENTS_LIMIT_MAX))} if limit is not None else {}
        call = Call("GET", path, params=params)
        return await self._call(call, EventPage.model_validate, deadline)

    async def cancel_run(self, run_id: str, *, deadline: float | None = None) -> CancelResult:
        """Ask the run to stop. Idempotent: on a finished run it changes nothing."""
        call = Call("POST", run_path(run_id, "cancel"))
        return await self._call(call, CancelResult.model_validate, deadline)

    # --- the request loop ----------------------------------------------------------------------

    async def _call(self, call: Call, parse: Callable[[Any], T], deadline: float | None) -> T:
        """Send `call`, retrying by the policy within the budget and the deadline; parse the data."""
        result, _ = await self._call_counted(call, parse, deadline)
        return result

    async def _call_counted(
        self, call: Call, parse: Callable[[Any], T], deadline: float | None, failures: list[str] | None = None
    ) -> tuple[T, int]:
        """`_call`, plus the number of the attempt that succeeded (1 when no retry was needed).

        `failures` (when given) collects what each retried attempt got instead of an answer, in words.
        """
        token = self._require_token()
        if self._gate is not None:
            self._gate.check_rejected(token, call.what)
        started = self._clock()
        stop_at, limit_name = self._stop_at(started, deadline)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(call, parse, token, attempt, stop_at, limit_name), attempt
            except (TransportError, ApiStatusError) as exc:
                now = self._clock()
                remaining = None if deadline is None else deadline - now
                delay = next_delay(exc, attempt, self._retry, now - started, self._rng, remaining=remaining)
                if delay is None:
                    raise
                if failures is not None:
                    failures.append(f"HTTP {exc.status}" if isinstance(exc, ApiStatusError) else "a connection failure")
                logger.debug(
                    "%s: retrying in %.2f s after %s (attempt %d)",
                    call.what,
                    delay,
                    type(exc).__name__,
                    attempt,
                )
                await self._sleep(delay)

    def _stop_at(self, started: float, deadline: float | None) -> tuple[float | None, str]:
        budget = self._retry.budget_seconds
        budget_end = started + budget if budget > 0 else None
        if deadline is not None and (budget_end is None or deadline <= budget_end):
            return deadline, "the call's deadline"
        return budget_end, f"the {budget:g} s time budget for this call"

    async def _attempt(
        self,
        call: Call,
        parse: Callable[[Any], T],
        token: str,
        attempt: int,
        stop_at: float | None,
        limit_name: str,
    ) -> T:
        response, content = await self._send(call, token, attempt, stop_at, limit_name)
        if self._follow_www_to_apex(response):
            response, content = await self._send(call, token, attempt, stop_at, limit_name)
        if 300 <= response.status_code < 400:
            raise self._judged(token, redirect_error(response, call.what, secret=token))
        self._judge(token, response.status_code)
        data = envelope_data(response, call.what, token, content)
        try:
            return parse(data)
        except ValidationError as exc:
            raise shape_error(exc, response.status_code, call.what, token) from None

    async def _send(
        self, call: Call, token: str, attempt: int, stop_at: float | None, limit_name: str
    ) -> tuple[httpx2.Response, bytes]:
        """One request on the wire, inside the token's share of the upstream; the body read with a cap."""
        remaining = None if stop_at is None else stop_at - self._clock()
        if remaining is not None and remaining <= 0:
            raise out_of_time(call, limit_name)
        headers = {
            "Authorization": f"Bearer {token}",
            "User-Agent": USER_AGENT,
            "Accept": "application/json",
            **call.headers,
        }
        url = self._learned_base() + API_PREFIX + call.path
        request = self._http.build_request(
            call.method,
            url,
            params=dict(call.params),
            json=call.body,
            headers=headers,
            timeout=cut_timeout(self._http.timeout, remaining),
        )
        try:
            with anyio.fail_after(remaining):
                async with self._slot(token):
                    if self._gate is not None:  # a 401 may have come while this call queued for its slot
                        self._gate.check_rejected(token, call.what)
                    self._request_count += 1
                    response = await self._http.send(request, stream=True)
                    try:
                        content = await read_capped(response, call.what, self._max_body_bytes)
                    finally:
                        await response.aclose()
        except httpx2.HTTPError as exc:
            raise error_from_transport(exc, call.what, secret=token) from None
        except TimeoutError:
            raise UpstreamTimeoutError(f"{call.what}: {limit_name} ran out before an answer arrived") from None
        logger.debug("%s -> %d (attempt %d)", call.what, response.status_code, attempt)
        return response, content

    def _slot(self, token: str) -> AbstractAsyncContextManager[None]:
        return self._gate.request_slot(token) if self._gate is not None else nullcontext()

    def _judge(self, token: str, status: int) -> None:
        """Tell the gate what upstream made of the token: a 401 is remembered, a user's answer vouches."""
        if self._gate is None:
            return
        if status == 401:
            self._gate.rejected(token)
        elif status < 500:
            self._gate.accepted(token)

    def _judged(self, token: str, exc: ApiStatusError) -> ApiStatusError:
        if self._gate is not None and isinstance(exc, AuthenticationError):  # a redirect to the login page
            self._gate.rejected(token)
        return exc

    def _require_token(self) -> str:
        if not self._token:
            raise MissingTokenError(
                f"No Mogplex token is configured: set {TOKEN_ENV} to a personal access token (mog_…) "
                "created in Mogplex settings. Nothing was sent."
            )
        if not _TOKEN_SHAPE.fullmatch(self._token):
            raise MissingTokenError(
                f"The configured Mogplex token is unusable: it contains spaces or non-ASCII characters. "
                f"Set {TOKEN_ENV} to the token exactly as Mogplex showed it (mog_…). Nothing was sent."
            )
        return self._token

    # --- redirects -----------------------------------------------------------------------------

    def _learned_base(self) -> str:
        self._base_url = learned_base(self._http, self._base_url)
        return self._base_url

    def _follow_www_to_apex(self, response: httpx2.Response) -> bool:
        """Production answers www.mogplex.com with a 308 to the apex: adopt the apex, once, and resend."""
        apex = adopt_apex(self._http, self._base_url, response)
        if apex is None:
            return False
        self._base_url = apex
        return True

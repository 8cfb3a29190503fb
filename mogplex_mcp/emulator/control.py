"""Control endpoints under /_emulator/ (loopback only, no auth): faults, the request log, runs, reset."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Scope

if TYPE_CHECKING:
    from mogplex_mcp.emulator.app import Emulator

CONTROL = "/_emulator"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_FAULT_FIELDS = {"kind": str, "count": int, "method": str, "path": str, "delay": float, "retry_after": int, "size": int}


def _answer(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse({"ok": True, "data": data}, status_code=status)


def _refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": {"code": "BAD_REQUEST", "message": message}}, status_code=status)


def _coerce(name: str, value: Any) -> Any:
    expected = _FAULT_FIELDS[name]
    if expected is str and isinstance(value, str):
        return value
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if expected is float and numeric:
        return float(value)
    if expected is int and numeric and value == int(value):
        return int(value)
    raise ValueError(f"{name} must be a {expected.__name__}")


def fault_arguments(body: Any) -> dict[str, Any]:
    """inject_fault's keyword arguments from a JSON object, or ValueError naming the bad field."""
    if not isinstance(body, dict) or not isinstance(body.get("kind"), str):
        raise ValueError('expected a JSON object like {"kind": "html_502", "count": 1}')
    unknown = sorted(set(body) - set(_FAULT_FIELDS))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; known: {', '.join(_FAULT_FIELDS)}")
    return {name: _coerce(name, value) for name, value in body.items() if value is not None}


class ControlApi:
    """What tests and demos use to steer an emulator running in another process or thread."""

    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator

    def routes(self) -> list[Route]:
        return [
            Route(f"{CONTROL}/faults", self.add_fault, methods=["POST"]),
            Route(f"{CONTROL}/faults", self.clear_faults, methods=["DELETE"]),
            Route(f"{CONTROL}/faults", self.list_faults, methods=["GET"]),
            Route(f"{CONTROL}/requests", self.list_requests, methods=["GET"]),
            Route(f"{CONTROL}/runs", self.list_runs, methods=["GET"]),
            Route(f"{CONTROL}/reset", self.reset, methods=["POST"]),
        ]

    async def add_fault(self, request: Request) -> Response:
        try:
            arguments = fault_arguments(json.loads(await request.body() or b"null"))
            self.emu.inject_fault(**arguments)
        except ValueError as exc:
            return _refuse(400, str(exc))
        return await self.list_faults(request, status=201)

    async def list_faults(self, request: Request, status: int = 200) -> Response:
        return _answer({"faults": [fault.as_json() for fault in self.emu.faults.armed()]}, status)

    async def clear_faults(self, request: Request) -> Response:
        self.emu.clear_faults()
        return _answer({"faults": []})

    async def list_requests(self, request: Request) -> Response:
        records = [record.as_json() for record in self.emu.log.snapshot()]
        return _answer({"requests": records, "peakInFlight": self.emu.log.peaks()})

    async def list_runs(self, request: Request) -> Response:
        now = self.emu.clock()
        runs = [
            {
                "runId": run.run_id,
                "owner": run.owner,
                "scenario": run.scenario,
                "status": run.status(now),
                "createdAt": run.detail(now)["createdAt"],
                "events": len(run.events(now)),
            }
            for run in self.emu.store.runs()
        ]
        return _answer({"runs": runs})

    async def reset(self, request: Request) -> Response:
        self.emu.reset()
        return _answer({"reset": True})


def from_loopback(scope: Scope) -> bool:
    """Control endpoints answer only loopback clients (or in-process calls, which have no peer)."""
    client = scope.get("client")
    if not client:
        return True
    host = str(client[0])
    return host in LOOPBACK_HOSTS or host.startswith("127.")

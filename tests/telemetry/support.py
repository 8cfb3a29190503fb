"""The HTTP server with its metrics port, both on loopback, in front of the emulator; and scrape helpers."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from mogplex_mcp.emulator import EmulatorConfig, EmulatorHandle, running_emulator
from mogplex_mcp.server.transport.http import HttpOptions, build_http_app
from mogplex_mcp.server.transport.serving import metrics_listener, running_http
from tests.e2e.support import emulator_config
from tests.server.harness import FAST_FOLLOW, settings_for

# Configured as a public bind (bearer required), with metrics on a free loopback port; served on 127.0.0.1.
OPTIONS = HttpOptions(host="0.0.0.0", allowed_hosts=("127.0.0.1",), metrics_port=0)  # noqa: S104 - never bound


@dataclass
class Observed:
    url: str
    metrics_url: str
    emu: EmulatorHandle
    app: Starlette

    async def scrape(self) -> Scrape:
        async with httpx2.AsyncClient(timeout=10) as http:
            response = await http.get(self.metrics_url)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        return Scrape(response.text)


class Scrape:
    """One scrape, parsed by prometheus_client's own parser (what a Prometheus server reads)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]

    def value(self, name: str, **labels: str) -> float:
        """The sum of `name`'s samples whose labels include `labels` (0 when none)."""
        return sum(
            s.value for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def has(self, name: str) -> bool:
        return any(sample.name == name for sample in self.samples)

    def label_values(self) -> set[str]:
        return {value for sample in self.samples for value in sample.labels.values()}


@asynccontextmanager
async def observed(
    tmp_path: Path, *, emulator: EmulatorConfig | None = None, options: HttpOptions = OPTIONS, **settings: Any
) -> AsyncIterator[Observed]:
    async with running_emulator(emulator or emulator_config()) as emu:
        app = build_http_app(settings_for(emu, tmp_path / "state", token=None, **settings), options, follow=FAST_FOLLOW)
        async with (
            running_http(app, options=dataclasses.replace(options, metrics_port=None)) as url,
            metrics_listener(app, dataclasses.replace(options, metrics_host="127.0.0.1")) as metrics_url,
        ):
            assert metrics_url is not None
            yield Observed(url, metrics_url, emu, app)

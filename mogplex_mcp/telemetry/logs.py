"""Log formats: the default human-readable line, or one JSON object per line (`--log-format json`).

A JSON line holds `time` (UTC, ISO 8601), `level`, `logger` and `message`, plus the structured fields a
record carries in `extra={"fields": {...}}` (the per-tool-call line: tool, outcome, duration_ms, run_id,
request_id, trace_id). Every message and traceback is passed through `mask_secrets` on its way out, a last
line of defence behind the masking done where messages are made.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from mogplex_mcp.config import mask_secrets

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask_secrets(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({key: value for key, value in fields.items() if key not in entry})
        if record.exc_info:
            entry["exception"] = mask_secrets(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for `--log-format` ("text" or "json")."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)

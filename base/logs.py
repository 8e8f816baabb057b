"""Logging for people at 2 a.m.: loguru to stderr and to two rotated files.

stderr carries short human lines (journald adds its own timestamps under
systemd); `logs/nanoclaw.log` keeps everything at the configured level and
`logs/nanoclaw.error.log` only warnings and worse. Libraries that log through
the standard `logging` module (huey, watchdog, docker) are routed here too.
Known secret values are masked in every line before it is written.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from loguru import logger

from base.config import Settings

_LEVELS = {
    "trace": "TRACE",
    "debug": "DEBUG",
    "info": "INFO",
    "warn": "WARNING",
    "error": "ERROR",
    "fatal": "CRITICAL",
}
ROTATION = "10 MB"
RETENTION = 5
_STDERR_FORMAT = "<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> {message}"
_FILE_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level: <7} [{process}] {name}: {message}"


class _InterceptHandler(logging.Handler):
    """Hands records of the standard logging module to loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).log(level, record.getMessage())


def mask_secrets(text: str, secrets: list[str]) -> str:
    """Replace every occurrence of a secret value by a fixed mask."""
    for secret in secrets:
        if len(secret) >= 6:
            text = text.replace(secret, "****")
    return text


def setup_logging(
    settings: Settings, *, to_files: bool = True, stderr_level: str | None = None
) -> None:
    """Install the sinks; safe to call again (it replaces earlier sinks).

    `stderr_level` overrides the configured level on stderr only (short
    commands show warnings and worse, the service shows everything).
    """
    level = _LEVELS[settings.log_level]
    secrets = sorted(settings.secrets.values(), key=len, reverse=True)

    def patch(record: dict) -> None:
        record["message"] = mask_secrets(record["message"], secrets)

    logger.remove()
    logger.configure(patcher=patch)
    logger.add(sys.stderr, level=stderr_level or level, format=_STDERR_FORMAT, colorize=None)
    if to_files:
        logs_dir: Path = settings.logs_dir
        logs_dir.mkdir(parents=True, exist_ok=True)
        common = dict(rotation=ROTATION, retention=RETENTION, enqueue=False, format=_FILE_FORMAT)
        logger.add(logs_dir / "nanoclaw.log", level=level, **common)
        logger.add(logs_dir / "nanoclaw.error.log", level="WARNING", **common)
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.INFO, force=True)

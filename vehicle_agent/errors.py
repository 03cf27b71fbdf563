"""Exceptions the vehicle agent raises, grouped by what the caller can do about them.

Foreign exceptions (cantools, python-can, asammdf, grpc) are translated where they
enter the agent and chained with ``raise ... from exc``, so callers only need to
know this tree::

    AgentError                 root: anything the agent itself reports
    ├── DbcError               a DBC file cannot be read or parsed (fix the file)
    ├── SourceError            a log file or CAN interface cannot be read or opened
    │   └── LogFormatError     a log file is corrupt or not in its suffix's format (names where)
    ├── ConfigError            the agent's configuration is invalid
    ├── PlanError              a collection plan cannot be applied (the previous one keeps running)
    ├── UplinkError            the link to the cloud failed (retry later)
    └── OutboxError            the outbox file is corrupt, foreign or failing (move it aside)
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "AgentError",
    "ConfigError",
    "DbcError",
    "LogFormatError",
    "OutboxError",
    "PlanError",
    "SourceError",
    "UplinkError",
]


class AgentError(Exception):
    """Root of every error the vehicle agent raises on purpose."""


class DbcError(AgentError):
    """A DBC file could not be loaded.

    ``path`` is the file as configured, ``reason`` what cantools (or the operating
    system) said about it.
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot load DBC file {str(path)!r}: {reason}")
        self.path = path
        self.reason = reason


class SourceError(AgentError):
    """A frame source (log file or CAN interface) cannot be opened or read.

    The message names the file or interface and says why.
    """


class LogFormatError(SourceError):
    """A log file is truncated, corrupt or not in the format its suffix names.

    ``position`` says where, in the file's own terms (``"byte 4096"``,
    ``"line 17"``, ``"frame 1200"``); ``reason`` what is wrong there.
    """

    def __init__(self, path: Path, position: str, reason: str) -> None:
        super().__init__(f"cannot read log file {str(path)!r} at {position}: {reason}")
        self.path = path
        self.position = position
        self.reason = reason


class ConfigError(AgentError):
    """The agent's configuration is invalid or inconsistent."""


class PlanError(AgentError):
    """A collection plan cannot be applied to this car's catalog.

    The message names the plan version, the signal or trigger at fault and why;
    it goes back to the cloud as the rejection reason.
    """


class UplinkError(AgentError):
    """Talking to the cloud gateway failed; the data stays queued on the car."""


class OutboxError(AgentError):
    """The durable outbox cannot be opened or written.

    ``path`` is the outbox file, ``reason`` what SQLite (or the check) said. A
    corrupt or foreign file is never repaired or overwritten: it is data.
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"outbox {str(path)!r}: {reason}")
        self.path = path
        self.reason = reason

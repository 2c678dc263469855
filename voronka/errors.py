"""Errors a user can cause with their input. The CLI prints `str(error)` on one line, exit 1."""

from __future__ import annotations


class VoronkaUserError(Exception):
    """A mistake in the user's input or configuration (never a bug)."""


class ExportFormatError(VoronkaUserError):
    """A file that cannot be read as any supported export (or as the one the user named)."""

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 column: str | None = None):
        self.file, self.row, self.column = file, row, column
        where = ", ".join(
            part for part in (
                file and f"file {file}",
                row is not None and f"row {row}",
                column and f"column {column!r}",
            ) if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class MappingError(VoronkaUserError):
    """A column mapping (YAML) that does not fit the file or the canonical model."""


class ConfigError(VoronkaUserError):
    """A workspace configuration (voronka.yaml) that is invalid."""


class PipelineError(VoronkaUserError):
    """A pipeline stage failed; the message names it and the first line of the failure."""


class WarehouseBusyError(Exception):
    """Another process (a `voronka run`, the Dagster UI's run, a long export) holds the DuckDB
    warehouse's lock. Not the user's mistake and not a bug: the CLI says so in one line, exit 3."""

    def __init__(self, path, holder_pid: int | None, waited_seconds: float):
        self.path, self.holder_pid, self.waited_seconds = path, holder_pid, waited_seconds
        holder = f"process {holder_pid}" if holder_pid else "another process"
        super().__init__(f"the warehouse {path} is in use by {holder} (a `voronka run`, a run "
                         f"started from `voronka ui`, or another command); waited {waited_seconds:g} s: "
                         "try again when it has finished")

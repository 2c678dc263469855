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

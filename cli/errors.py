"""User-facing errors: one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; the message is printed as one line."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exception types whose message is a complete, user-facing explanation."""
    from configs import ConfigError
    from db import SchemaOutOfDate, StoreError
    from evolution import ObjectiveError
    from genome import GenomeError
    from mutations import MutationError
    from orchestrator.domain import DomainError
    from tables.nb201 import TableError

    return (
        UserError, GenomeError, MutationError, ObjectiveError, TableError, ConfigError, DomainError,
        SchemaOutOfDate, StoreError, FileNotFoundError,
    )

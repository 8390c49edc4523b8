"""User-facing errors: one clear line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

from domain.errors import AmoebaError


class UserError(AmoebaError):
    """A mistake the user can fix; the message is printed as one line."""


def user_error_types() -> tuple[type[BaseException], ...]:
    """Exception types whose message is a complete, user-facing explanation (every package's errors
    derive from ``AmoebaError``)."""
    return (AmoebaError, FileNotFoundError)

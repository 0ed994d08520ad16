"""One exception hierarchy. The CLI maps each to a one-line message and an exit code.

Every error a user can cause carries enough context to fix it without a traceback:
bad input names the file, line, column and field; a provider error names the provider and what
to do next.
"""

from __future__ import annotations


class LauncherError(Exception):
    """Base class: `str(err)` is the one line printed to the user."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # one line, hint appended
        msg = " ".join(self.message.split())
        return f"{msg} ({self.hint})" if self.hint else msg


class UsageError(LauncherError):
    """Bad input: a job file, a flag, an override. Exit code 2."""

    exit_code = 2


class JobError(UsageError):
    """A job file problem located at file:line:column and a field path."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 column: int | None = None, field: str | None = None, hint: str | None = None):
        self.file, self.line, self.column, self.field = file, line, column, field
        where = file or "<job>"
        if line is not None:
            where += f":{line}"
            if column is not None:
                where += f":{column}"
        prefix = f"{where}: "
        if field:
            prefix += f"{field}: "
        super().__init__(prefix + message, hint=hint)


class DataError(UsageError):
    """The data a job names is missing or unusable (no file, no column, one class)."""


class ProviderError(LauncherError):
    """A provider refused or failed. Names the provider and what to do."""

    exit_code = 3

    def __init__(self, provider: str, message: str, *, hint: str | None = None):
        self.provider = provider
        super().__init__(f"{provider}: {message}", hint=hint)


class CredentialsError(ProviderError):
    """Credentials are missing or were refused."""


class CapabilityError(UsageError):
    """A provider cannot do what was asked; the reason is declared with the backend."""

    def __init__(self, provider: str, feature: str, reason: str, *, hint: str | None = None):
        self.provider, self.feature, self.reason = provider, feature, reason
        super().__init__(f"{provider} cannot {feature}: {reason}", hint=hint)


class PrivacyError(UsageError):
    """The job's data sensitivity or regions do not fit the provider's privacy terms."""


class MissingDependencyError(UsageError):
    """An optional extra is not installed."""

    def __init__(self, what: str, extra: str):
        super().__init__(f"{what} is not installed", hint=f"pip install 'launcher[{extra}]'")


def first_line(e: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message ('' when it has none), for one-line errors."""
    return (str(e).strip().splitlines() or [""])[0][:limit]


def one_line(e: BaseException, limit: int = 300) -> str:
    """The whole message on one line (its type name when empty): for provider errors whose
    detail may sit past the first line."""
    return (" ".join(str(e).split()) or type(e).__name__)[:limit]


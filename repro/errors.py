"""User-facing errors: the CLI prints `repro: <message>` on one line and exits non-zero, no traceback."""


class ReproError(Exception):
    """Base of every error a user can cause and fix. Its message names the problem and the fix."""

    exit_code = 2


class SpecError(ReproError):
    """A table spec, preset or published-numbers file is missing, malformed or inconsistent."""


class DataError(ReproError):
    """A dataset is missing or laid out wrongly; the message says what layout is expected where."""


class ConfigError(ReproError):
    """Bad or conflicting command-line options or model arguments."""


class RunFailed(ReproError):
    """A run stopped without a result (NaN loss, unwritable store, ...)."""

    exit_code = 1


class StoreError(ReproError):
    """A file in the results store cannot be read, is not what a run writes, or is a link out of it."""


class CellBusy(ReproError):
    """Another live process holds the claim on a cell (see repro/store/claim.py)."""

    exit_code = 1

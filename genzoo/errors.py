"""The errors genzoo raises for problems a user can fix.

Every class here carries a one-line message that names the problem; the CLI prints it as
``genzoo: error: <message>`` and exits with status 2 (status 3 for a diverged training run),
never with a traceback.
"""

from __future__ import annotations


class GenZooError(Exception):
    """Base class: a problem with the user's input, named in one line."""

    exit_code = 2


class ConfigError(GenZooError):
    """An unknown model, an unknown option, or a value of the wrong type."""


class DataError(GenZooError):
    """A missing, corrupt or malformed dataset (wrong shape, NaN, unreadable file)."""


class CheckpointError(GenZooError):
    """A run directory or checkpoint that is missing, corrupt, or not genzoo's."""


class WriteError(GenZooError):
    """A file or folder that cannot be written: a missing folder, no permission, a full disk."""


class RunLocked(ConfigError):
    """Another process is training this run (it holds the run's lock): nothing of the run may be touched."""


class GenZooWarning(UserWarning):
    """Something the user should know that does not stop the work (the CLI prints ``genzoo: warning: ...``)."""


class TrainingDiverged(GenZooError):
    """The loss became NaN/inf or exploded; the last good checkpoint is kept."""

    exit_code = 3


def did_you_mean(word: str, choices) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""``.

    >>> did_you_mean("latnt_dim", ["latent_dim", "hidden"])
    " (did you mean 'latent_dim'?)"
    """
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""

"""The errors genzoo raises for problems a user can fix.

Every class here carries a one-line message that names the problem; the CLI prints it as
``genzoo: error: <message>`` and exits with status 2 (status 3 for a diverged training run),
never with a traceback.
"""

from __future__ import annotations


class GenZooError(Exception):
    """Base class: a problem with the user's input, named in one line; ``exit_code`` is the CLI's exit status.

    >>> import genzoo
    >>> try:
    ...     genzoo.build("vea", data_shape=(2,))
    ... except GenZooError as e:
    ...     print(type(e).__name__, e.exit_code, str(e).split(";")[0])
    ConfigError 2 unknown model 'vea' (did you mean 'vae'?)
    """

    exit_code = 2


class ConfigError(GenZooError):
    """An unknown model, an unknown option, or a value of the wrong type."""


class DataError(GenZooError):
    """A missing, corrupt or malformed dataset (wrong shape, NaN, unreadable file).

    >>> from genzoo.data import load_dataset
    >>> try:
    ...     load_dataset("ring", n=0)
    ... except DataError as e:
    ...     print(e)
    n must be a positive integer, got 0
    """


class CheckpointError(GenZooError):
    """A run directory or checkpoint that is missing, corrupt, or not genzoo's.

    >>> import genzoo, tempfile
    >>> try:
    ...     genzoo.load(tempfile.mkdtemp())
    ... except CheckpointError as e:
    ...     print(str(e).startswith("not a genzoo run: "), str(e).endswith(" has no config.json"))
    True True
    """


class WriteError(GenZooError):
    """A file or folder that cannot be written: a missing folder, no permission, a full disk."""


class RunLocked(ConfigError):
    """Another process is training this run (it holds the run's lock): nothing of the run may be touched."""


class GenZooWarning(UserWarning):
    """Something the user should know that does not stop the work (the CLI prints ``genzoo: warning: ...``)."""


class TrainingDiverged(GenZooError):
    """The loss became NaN/inf or exploded; the last good checkpoint is kept. The CLI exits 3.

    >>> TrainingDiverged("loss is nan").exit_code, DataError("x").exit_code
    (3, 2)
    """

    exit_code = 3


def did_you_mean(word: str, choices) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""``.

    >>> did_you_mean("latnt_dim", ["latent_dim", "hidden"]), did_you_mean("FULL", ["full", "diag"])
    (" (did you mean 'latent_dim'?)", " (did you mean 'full'?)")
    """
    import difflib

    folded = {str(c).casefold(): c for c in choices}  # 'FULL' is close to 'full'
    close = difflib.get_close_matches(str(word).casefold(), list(folded), n=1, cutoff=0.6)
    return f" (did you mean '{folded[close[0]]}'?)" if close else ""

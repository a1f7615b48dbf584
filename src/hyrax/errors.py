"""The Hyrax error tree.

Every error Hyrax raises on purpose is a :class:`HyraxError`, and also a subclass of the builtin
exception a Python user would expect (``ConfigError`` is a ``ValueError``, ``PluginError`` a
``LookupError``...), so ``except ValueError`` keeps working in user code.

An error message is an instruction: it names the key, file or object, says what was expected and what
was got, and says what to do.

>>> from hyrax.errors import ConfigError
>>> isinstance(ConfigError("x"), ValueError)
True
"""

from __future__ import annotations


class HyraxError(Exception):
    """Base class of every error Hyrax raises on purpose."""


class ConfigError(HyraxError, ValueError):
    """A configuration file or value is wrong: unknown key, wrong type, missing file, bad version."""


class ConfigKeyError(HyraxError, KeyError):
    """A config key that does not exist was read (``config["train"]["epocs"]``)."""

    def __str__(self) -> str:
        # KeyError quotes its argument; an instruction reads better without the quotes.
        return str(self.args[0]) if self.args else ""


class PluginError(HyraxError, LookupError):
    """A model, dataset, verb or other plugin could not be found or imported."""


class DataError(HyraxError, ValueError):
    """Input data is missing, corrupt or inconsistent."""


class ResultsError(HyraxError, FileNotFoundError):
    """A results directory (a run) could not be found or is incomplete."""


class ResultsWriteError(HyraxError, OSError):
    """Results could not be written (disk full, permissions); what was committed before stays readable."""


class HyraxWarning(UserWarning):
    """Base class of Hyrax's warnings."""


class ConfigMigrationWarning(HyraxWarning, FutureWarning):
    """A config written for an earlier Hyrax was upgraded; the message names old -> new."""


class ConfigStrictnessWarning(HyraxWarning):
    """A config problem that is an error normally, reported as a warning in ``general.dev_mode``."""


class RunBusyError(ResultsError):
    """Another process is writing this run directory (one writer per run)."""

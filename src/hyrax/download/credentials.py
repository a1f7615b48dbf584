"""HSC-SSP account credentials: from a file, else the environment, else the config; never shown.

Looked for in this order:

1. ``download.credentials_file``: a TOML file with ``username = "..."`` and ``password = "..."``;
2. the environment variables ``HSC_SSP_CAS_USERNAME`` and ``HSC_SSP_CAS_PASSWORD``;
3. the config keys ``download.username`` and ``download.password``.

>>> credentials = Credentials("alice", "secret", "a test")
>>> "secret" in repr(credentials)
False
>>> credentials.authorization()
'Basic YWxpY2U6c2VjcmV0'
"""

from __future__ import annotations

import base64
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hyrax.config import get_setting
from hyrax.errors import ConfigError

USERNAME_VARIABLE = "HSC_SSP_CAS_USERNAME"
PASSWORD_VARIABLE = "HSC_SSP_CAS_PASSWORD"

_WHERE = (
    'download.credentials_file (a TOML file with username = "..." and password = "..."), the environment '
    f"variables {USERNAME_VARIABLE} and {PASSWORD_VARIABLE}, or the config keys download.username and "
    "download.password"
)


@dataclass(frozen=True)
class Credentials:
    """A username and password, and where they came from (for messages; the password is never shown)."""

    username: str
    password: str = field(repr=False)
    source: str

    def authorization(self) -> str:
        """The value of an HTTP Basic ``Authorization`` header."""
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
        return f"Basic {token}"


def load_credentials(config: Mapping) -> Credentials:
    """The credentials of the first place that has them; a ConfigError listing the places if none does."""
    file = get_setting(config, "download.credentials_file")
    if file is not None:
        return _from_file(Path(str(file)).expanduser())
    username, password = os.environ.get(USERNAME_VARIABLE), os.environ.get(PASSWORD_VARIABLE)
    if username or password:
        if not (username and password):
            present, missing = (
                (USERNAME_VARIABLE, PASSWORD_VARIABLE) if username else (PASSWORD_VARIABLE, USERNAME_VARIABLE)
            )
            raise ConfigError(f"{present} is set but {missing} is not: set both, or neither.")
        return Credentials(
            username, password, f"the environment variables {USERNAME_VARIABLE}/{PASSWORD_VARIABLE}"
        )
    username = get_setting(config, "download.username")
    password = get_setting(config, "download.password")
    if username is not None and password is not None:
        from hyrax.config.secrets import MASK

        if MASK in (str(username), str(password)):
            raise ConfigError(
                "download.username/password hold the mask written in a run's runtime_config.toml (secrets are "
                f"never written in clear). Give the credentials in {_WHERE.split(', or the config')[0]}."
            )
        return Credentials(
            str(username), str(password), "the config keys download.username/download.password"
        )
    raise ConfigError(f"No HSC-SSP credentials found. Give your account's username and password in {_WHERE}.")


def _from_file(path: Path) -> Credentials:
    source = f"download.credentials_file = '{path}'"
    try:
        with open(path, "rb") as handle:
            values = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(
            f'{source} does not exist. Create it (username = "..." and password = "..."), or set '
            f"download.credentials_file = false to use {USERNAME_VARIABLE}/{PASSWORD_VARIABLE} or the "
            f"config keys download.username/download.password."
        ) from None
    except OSError as error:
        raise ConfigError(f"{source} cannot be read: {error.strerror}.") from None
    except tomllib.TOMLDecodeError as error:
        # The message gives the line and column only, never the file's text.
        raise ConfigError(
            f'{source} is not TOML ({error}). Write it as two lines: username = "..." and password = "...".'
        ) from None
    missing = [
        key for key in ("username", "password") if not isinstance(values.get(key), str) or not values[key]
    ]
    if missing:
        raise ConfigError(
            f'{source} has no {" or ".join(missing)}. Write it as two lines: username = "..." and password = "...".'
        )
    return Credentials(values["username"], values["password"], f"the credentials file {path}")

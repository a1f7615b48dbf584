"""Secret config values (passwords, tokens, keys) are never shown or written in clear.

A key is secret when its name holds one of :data:`SECRET_WORDS` (``download.password``,
``data_set.KafkaStreamDataset.sasl_password``, ``my_api_token``...), unless it names a file or path
(``credentials_file`` is where secrets live, not a secret). Everything that shows or writes a config
(``hyrax config``, ``h.config`` in a notebook, a run's ``runtime_config.toml``, ``config_help``) masks
them; the values themselves stay in memory for the code that needs them.

>>> masked({"download": {"username": "me", "password": "hunter2", "credentials_file": "~/hsc.toml"}})
{'download': {'username': '********', 'password': '********', 'credentials_file': '~/hsc.toml'}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Parts of a key's name that make it secret.
SECRET_WORDS = ("password", "passwd", "secret", "token", "api_key", "apikey", "private_key", "access_key")
#: Keys that hold who you are on a service (shown masked too: an account name is half a login).
ACCOUNT_KEYS = ("username", "user")
MASK = "********"


def is_secret(key: str) -> bool:
    """True for the name of a secret key (the last segment of a dotted key)."""
    name = str(key).lower()
    if name.endswith(("_file", "_path", "_dir")):
        return False
    return name in ACCOUNT_KEYS or any(word in name for word in SECRET_WORDS)


def mask(key: str, value: Any) -> Any:
    """The value to show for ``key``: masked when the key is secret and a value is set."""
    if is_secret(key) and value not in (False, None, ""):
        return MASK
    return value


def masked(table: Mapping) -> dict:
    """A copy of a (nested) config table with every secret value masked."""
    return {
        key: masked(value) if isinstance(value, Mapping) else mask(key, value) for key, value in table.items()
    }

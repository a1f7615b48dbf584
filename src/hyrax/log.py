"""Logging set-up from ``[general] log_destination`` and ``log_level``.

Messages go to stderr, stdout or a file (plain text, no colour codes). Calling :func:`setup_logging`
again (a new ``Hyrax()`` in the same notebook) replaces Hyrax's handler instead of adding a second one.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path

from hyrax.errors import ConfigError

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_HANDLER_MARK = "_hyrax_handler"


def setup_logging(config: Mapping) -> logging.Logger:
    """Point the ``hyrax`` logger at ``general.log_destination`` with ``general.log_level``."""
    general = config["general"]
    level_name = str(general["log_level"]).lower()
    level = logging.getLevelName(level_name.upper())
    if not isinstance(level, int):
        raise ConfigError(
            f"general.log_level must be debug, info, warning, error or critical, got {level_name!r}."
        )
    destination = general["log_destination"]
    if destination in ("stderr", False):
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    elif destination == "stdout":
        handler = logging.StreamHandler(sys.stdout)
    else:
        path = Path(destination).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(path, encoding="utf-8")
        except OSError as error:
            raise ConfigError(
                f"general.log_destination = {destination!r}: cannot open the log file ({error.strerror}). "
                f'Use a writable path, or "stderr".'
            ) from None
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    setattr(handler, _HANDLER_MARK, True)
    logger = logging.getLogger("hyrax")
    for old in [h for h in logger.handlers if getattr(h, _HANDLER_MARK, False)]:
        logger.removeHandler(old)
        old.close()
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger

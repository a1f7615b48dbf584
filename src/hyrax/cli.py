"""``hyrax <verb> [-c FILE] [verb options]``: the command line, built from the same verb classes.

``hyrax --help`` reads only the verb table: it imports no verb module, torch or other heavy backend.
On any failure the command prints one paragraph on stderr and exits non-zero (2 for a usage error,
1 for a failed run, 130 when interrupted); the full traceback is printed only at log level "debug".
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import warnings
from collections.abc import Sequence

from hyrax import __version__
from hyrax.plugins import VERBS, did_you_mean
from hyrax.verbs import BUILTIN_VERBS

_LEVELS = ("debug", "info", "warning", "error", "critical")


def top_help() -> str:
    # Built-in verbs in pipeline order, then any registered by plugins.
    names = [n for n in BUILTIN_VERBS if n in VERBS] + [n for n in VERBS.names() if n not in BUILTIN_VERBS]
    width = max(len(name) for name in names) + 2
    lines = [f"  {name:<{width}}{VERBS.summary(name)}" for name in names]
    return (
        "usage: hyrax [--version] <verb> [-c CONFIG] [options]\n\n"
        "Hyrax: low-code machine learning for astronomy.\n\n"
        "verbs:\n" + "\n".join(lines) + "\n\n"
        "Run `hyrax <verb> --help` for a verb's options. The config is -c FILE, else ./hyrax_config.toml,\n"
        "else the defaults (print them with `hyrax config`)."
    )


def verb_parser(name: str) -> argparse.ArgumentParser:
    verb_class = VERBS.get(name)
    parser = argparse.ArgumentParser(prog=f"hyrax {name}", description=VERBS.summary(name))
    parser.add_argument(
        "-c", "--runtime-config", metavar="FILE", help="your config file (default: ./hyrax_config.toml)"
    )
    parser.add_argument("--log-level", choices=_LEVELS, help="overrides general.log_level for this run")
    verb_class.add_arguments(parser)
    return parser


def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"hyrax: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hyrax`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print(top_help(), file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(top_help())
        return 0
    if argv[0] == "--version":
        print(f"hyrax {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in VERBS:
        print(
            f"hyrax: '{name}' is not a verb.{did_you_mean(name, VERBS.names())} "
            f"Verbs: {', '.join(VERBS.names())}. See `hyrax --help`.",
            file=sys.stderr,
        )
        return 2
    warnings.formatwarning = _format_warning
    args = verb_parser(name).parse_args(rest)  # exits 2 with argparse's message on a usage error
    return _run(name, args)


def _run(name: str, args: argparse.Namespace) -> int:
    debug = args.log_level == "debug"
    try:
        from hyrax.config import ConfigManager
        from hyrax.log import setup_logging

        manager = ConfigManager(args.runtime_config)
        if args.log_level:
            manager.set_config("general.log_level", args.log_level)
        debug = manager.config["general"]["log_level"] == "debug"
        setup_logging(manager.config)
        import copy

        verb = VERBS.get(name)(copy.deepcopy(manager.config))
        code = verb.run_cli(args)
        return 0 if code is None else int(code)
    except KeyboardInterrupt as interrupt:  # a verb that can continue says how (train: --resume RUN_DIR)
        said = f" {interrupt}" if str(interrupt) else ""
        print(f"hyrax {name}: interrupted.{said}", file=sys.stderr)
        return 130
    except Exception as error:  # every failure ends in one paragraph and a non-zero exit
        _report(name, error, debug)
        return 1


def _report(name: str, error: BaseException, debug: bool) -> None:
    from hyrax.errors import HyraxError

    if debug:
        import traceback

        traceback.print_exception(error, file=sys.stderr)
    if isinstance(error, HyraxError):
        message = str(error)
    else:
        message = f"unexpected {type(error).__name__}: {error}"
        if not debug:
            message += " (run again with --log-level debug for the full traceback)"
    # One paragraph: keep the message's own line breaks (lists of problems), wrap nothing else.
    body = textwrap.indent(message, "  ").lstrip()
    print(f"hyrax {name}: error: {body}", file=sys.stderr)
    import logging

    logger = logging.getLogger("hyrax")
    if any(getattr(h, "baseFilename", None) for h in logger.handlers):
        logger.error("%s failed: %s", name, message)


if __name__ == "__main__":
    sys.exit(main())

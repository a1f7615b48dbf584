"""The command line: help, version, exit codes and error text, in-process and as a real subprocess."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from hyrax.cli import main
from hyrax.errors import DataError
from hyrax.plugins import VERBS
from hyrax.verbs.verb import Verb
from tests.conftest import run_hyrax


def hyrax(*args, cwd=None):
    return run_hyrax(*args, cwd=cwd, timeout=60)


class FailingVerb(Verb):
    name = "explode"
    summary = "Fails, for tests."

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--kind", default="data")

    def run_cli(self, args):
        if args.kind == "data":
            raise DataError("object 42: the FITS file is truncated. Re-download it.")
        raise ZeroDivisionError("division by zero")


@pytest.fixture
def explode_verb():
    VERBS.register("explode", FailingVerb, summary=FailingVerb.summary)
    yield
    VERBS.unregister("explode")


def test_help_lists_verbs_with_one_line_each():
    result = hyrax("--help")
    assert result.returncode == 0
    assert re.search(r"^  config +Print the resolved configuration", result.stdout, re.M)
    assert re.search(r"^  prepare +Load the datasets", result.stdout, re.M)
    assert "verbs:" in result.stdout


def test_version():
    from hyrax import __version__

    result = hyrax("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"hyrax {__version__}"


def test_no_arguments_is_a_usage_error():
    result = hyrax()
    assert result.returncode == 2 and "usage: hyrax" in result.stderr


def test_unknown_verb_suggests_and_exits_2():
    result = hyrax("confg")
    assert result.returncode == 2
    assert "'confg' is not a verb. Did you mean 'config'?" in result.stderr


def test_bad_verb_option_exits_2():
    result = hyrax("config", "--no-such-option")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr


def test_missing_config_file_is_one_paragraph_and_exit_1(tmp_path):
    result = hyrax("config", "-c", str(tmp_path / "missing.toml"))
    assert result.returncode == 1
    assert result.stderr.startswith("hyrax config: error: Config file")
    assert "missing.toml" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_error_lists_problems(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nepocs = 2\n")
    result = hyrax("config", "-c", str(path))
    assert result.returncode == 1
    assert "'train.epocs'" in result.stderr and "Did you mean 'train.epochs'?" in result.stderr


def test_config_verb_prints_resolved_config_and_key_help(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nepochs = 2\n")
    result = hyrax("config", "-c", str(path))
    assert result.returncode == 0 and "epochs = 2" in result.stdout
    assert '["torch.optim.Adam"]' in result.stdout
    result = hyrax("config", "train.epochs", "-c", str(path))
    assert result.returncode == 0
    assert "Number of passes" in result.stdout and "current value: 2" in result.stdout


def test_migration_warnings_are_readable_on_the_command_line(tmp_path):
    path = tmp_path / "old.toml"
    path.write_text("[data_loader]\nshuffle = true\n")
    result = hyrax("config", "-c", str(path))
    assert result.returncode == 0
    assert "hyrax: warning:" in result.stderr and "data_loader.shuffle -> train.shuffle" in result.stderr


def test_failed_verb_exits_1_with_message_and_no_traceback(explode_verb, capsys):
    assert main(["explode"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("hyrax explode: error: object 42: the FITS file is truncated. Re-download it.")
    assert "Traceback" not in err


def test_unexpected_error_names_type_and_points_to_debug(explode_verb, capsys):
    assert main(["explode", "--kind", "bug"]) == 1
    err = capsys.readouterr().err
    assert "unexpected ZeroDivisionError: division by zero" in err
    assert "--log-level debug" in err and "Traceback" not in err


def test_debug_log_level_prints_the_traceback(explode_verb, capsys, write_config):
    assert main(["explode", "--kind", "bug", "--log-level", "debug"]) == 1
    assert "Traceback" in capsys.readouterr().err
    path = write_config('[general]\nlog_level = "debug"\n')
    assert main(["explode", "--kind", "bug", "-c", str(path)]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_help_imports_nothing_heavy():
    code = (
        "import sys; from hyrax.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'ignite', 'lancedb', 'mlflow', 'numpy', 'tomlkit', 'hyrax.config') "
        "if m in sys.modules]\nprint('HEAVY', heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


def test_hyrax_construction_imports_nothing_heavy():
    code = (
        "import sys, hyrax; hyrax.Hyrax()\n"
        "heavy = [m for m in ('torch', 'ignite', 'lancedb', 'mlflow', 'chromadb', 'umap') if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr

"""Credentials (src/hyrax/download/credentials.py): where they are found, in which order, the errors, and
that the password never reaches a log, the run directory, the manifest or the terminal."""

from __future__ import annotations

import pytest

from hyrax.download.credentials import load_credentials
from hyrax.errors import ConfigError
from tests.conftest import run_hyrax
from tests.download.das_server import PASSWORD, USERNAME


@pytest.fixture
def config(hyrax_config, monkeypatch):
    monkeypatch.delenv("HSC_SSP_CAS_USERNAME", raising=False)
    monkeypatch.delenv("HSC_SSP_CAS_PASSWORD", raising=False)
    return hyrax_config.config


def credentials_file(tmp_path, text=f'username = "{USERNAME}"\npassword = "{PASSWORD}"\n'):
    path = tmp_path / "hsc_credentials.toml"
    path.write_text(text)
    return path


def test_file_beats_environment_beats_config(config, tmp_path, monkeypatch):
    config["download"]["username"], config["download"]["password"] = "from-config", "config-password"
    found = load_credentials(config)
    assert (found.username, found.source) == (
        "from-config",
        "the config keys download.username/download.password",
    )
    monkeypatch.setenv("HSC_SSP_CAS_USERNAME", "from-env")
    monkeypatch.setenv("HSC_SSP_CAS_PASSWORD", "env-password")
    found = load_credentials(config)
    assert (found.username, found.password) == ("from-env", "env-password")
    assert "HSC_SSP_CAS_USERNAME" in found.source
    config["download"]["credentials_file"] = str(credentials_file(tmp_path))
    found = load_credentials(config)
    assert (found.username, found.password) == (USERNAME, PASSWORD)
    assert found.source == f"the credentials file {tmp_path / 'hsc_credentials.toml'}"
    assert PASSWORD not in repr(found)


def test_nothing_anywhere_lists_the_three_places(config):
    with pytest.raises(ConfigError) as error:
        load_credentials(config)
    message = str(error.value)
    for place in (
        "download.credentials_file",
        "HSC_SSP_CAS_USERNAME",
        "HSC_SSP_CAS_PASSWORD",
        "download.password",
    ):
        assert place in message


def test_half_set_environment_is_an_error(config, monkeypatch):
    monkeypatch.setenv("HSC_SSP_CAS_USERNAME", "someone")
    with pytest.raises(ConfigError, match="HSC_SSP_CAS_USERNAME is set but HSC_SSP_CAS_PASSWORD is not"):
        load_credentials(config)


@pytest.mark.parametrize(
    "text, words",
    [
        (None, "does not exist"),
        ('username = "a"\n', "has no password"),
        (f"username: a\npassword: {PASSWORD}\n", "is not TOML"),
    ],
)
def test_bad_credentials_file(config, tmp_path, text, words):
    path = tmp_path / "missing.toml" if text is None else credentials_file(tmp_path, text)
    config["download"]["credentials_file"] = str(path)
    with pytest.raises(ConfigError, match=words) as error:
        load_credentials(config)
    assert PASSWORD not in str(error.value)


def test_password_is_never_written_or_shown(service, catalog, tmp_path, write_config):
    """A real `hyrax download` at debug level, with a failing and a succeeding run: no trace of it."""
    running = service()
    path, _ = catalog(3)
    log = tmp_path / "hyrax.log"
    base = f"""
        [general]
        data_dir = "{tmp_path / "data"}"
        results_dir = "{tmp_path / "results"}"
        log_level = "debug"
        log_destination = "{log}"
        [download]
        service_url = "{running.url}"
        fits_file = "{path}"
        retry_wait = 0.01
        """
    wrong = write_config(
        base + '        username = "alice"\n        password = "Wr0ng-Secret"\n', "wrong.toml"
    )
    right = write_config(base + f'        credentials_file = "{credentials_file(tmp_path)}"\n', "right.toml")
    outputs = []
    for config_file, code in ((wrong, 1), (right, 0)):
        result = run_hyrax("download", "-c", str(config_file), timeout=120)
        assert result.returncode == code, result.stderr
        outputs += [result.stdout, result.stderr]
    assert "refused the username and password (HTTP 401) read from the config keys" in outputs[1]
    written = [log.read_text(), *outputs]
    written += [p.read_text(errors="replace") for p in (tmp_path / "results").rglob("*") if p.is_file()]
    written += [p.read_bytes().decode("latin-1") for p in (tmp_path / "data").rglob("*") if p.is_file()]
    assert "download: credentials from" in written[0]
    for secret in (PASSWORD, "Wr0ng-Secret"):
        assert not [text for text in written if secret in text]

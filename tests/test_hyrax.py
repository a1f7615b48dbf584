"""The notebook facade: config access, verbs on copies, registries, attribute errors."""

from __future__ import annotations

import pytest

from hyrax import Hyrax
from hyrax.errors import ConfigError
from hyrax.plugins import VERBS
from hyrax.verbs.verb import Verb


class MutatingVerb(Verb):
    name = "mutate"
    summary = "Changes its config and reports what it saw."

    def run(self, epochs=None):
        seen = self.config["train"]["epochs"]
        self.config["train"]["epochs"] = -1
        self.config["general"]["results_dir"] = "/nowhere"
        return {"seen": seen, "config": self.config}


@pytest.fixture
def mutate_verb():
    VERBS.register("mutate", MutatingVerb, summary=MutatingVerb.summary)
    yield
    VERBS.unregister("mutate")


def test_verbs_run_on_a_deep_copy(mutate_verb):
    h = Hyrax(setup_logging=False)
    h.set_config("train.epochs", 3)
    result = h.mutate()
    assert result["seen"] == 3
    assert h.config["train"]["epochs"] == 3
    assert h.config["general"]["results_dir"] == "./results"
    assert result["config"] is not h.config
    assert result["config"]["train"] is not h.config["train"]


def test_hand_edited_config_is_checked_when_a_verb_runs(mutate_verb):
    h = Hyrax(setup_logging=False)
    h.config["train"]["epocs"] = 3
    with pytest.raises(ConfigError, match=r"'train\.epocs'.*Did you mean 'train\.epochs'"):
        h.mutate()


def test_unknown_attribute_raises_with_suggestion():
    h = Hyrax(setup_logging=False)
    with pytest.raises(AttributeError) as error:
        h.set_confg("train.epochs", 1)
    assert "'Hyrax' object has no attribute 'set_confg'" in str(error.value)
    assert "Did you mean 'set_config'?" in str(error.value)
    with pytest.raises(AttributeError, match="no attribute 'trian'"):
        h.trian()
    assert not hasattr(h, "nonexistent")


def test_cli_only_verbs_are_not_methods():
    h = Hyrax(setup_logging=False)
    assert "config" in h.list_verbs()
    assert not callable(h.config)


def test_builtin_verbs_are_real_methods_with_docs(mutate_verb):
    h = Hyrax(setup_logging=False)
    assert "mutate" in dir(h)


def test_config_help_prints(capsys):
    h = Hyrax(setup_logging=False)
    text = h.config_help("train.epochs")
    assert "Number of passes" in text and "Number of passes" in capsys.readouterr().out


def test_config_file_argument_and_local_file(_isolated_cwd, write_config):
    assert Hyrax(setup_logging=False).config_file is None
    path = write_config("[train]\nepochs = 4\n")
    h = Hyrax(config_file=path, setup_logging=False)
    assert h.config_file == path and h.config["train"]["epochs"] == 4
    with pytest.raises(ConfigError, match="does not exist"):
        Hyrax(config_file="missing.toml")


def test_list_registries_return_names():
    h = Hyrax(setup_logging=False)
    assert isinstance(h.list_models(), list)
    assert isinstance(h.list_dataset_classes(), list)


def test_logging_to_a_file_is_plain_text(tmp_path, write_config, mutate_verb):
    log = tmp_path / "logs" / "hyrax.log"
    h = Hyrax(config_file=write_config(f'[general]\nlog_destination = "{log}"\nlog_level = "debug"\n'))
    import logging

    logging.getLogger("hyrax.test").info("hello from a test")
    Hyrax(config_file=write_config(f'[general]\nlog_destination = "{log}"\n', name="again.toml"))
    logging.getLogger("hyrax.test").warning("only once")
    text = log.read_text()
    assert "INFO hyrax.test: hello from a test" in text
    assert text.count("only once") == 1  # a second Hyrax() replaced the handler, not added one
    assert "\x1b[" not in text
    assert h is not None

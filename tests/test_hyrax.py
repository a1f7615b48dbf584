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


def test_every_builtin_verb_is_a_method_that_runs_its_own_class():
    """Each built-in verb (but the CLI-only ones) is h.<verb>, tab-completed, and calls that verb's class."""
    from hyrax import verbs

    h = Hyrax(setup_logging=False)
    names = [n for n in verbs.BUILTIN_VERBS if n not in verbs.CLI_ONLY]
    assert {"train", "infer", "test", "reduce_dimensions", "save_to_database", "visualize"} <= set(names)
    for name in names:
        method = getattr(h, name)
        assert name in dir(h) and method.__name__ == name, name  # a real, named, documented method
        assert VERBS.summary(name) in method.__doc__, name
        assert VERBS.get(name).run.__doc__, f"{name}.run has no docstring"
    # Each runs its own verb class (these errors come from those classes' run).
    with pytest.raises(ConfigError, match=r"Testing needs a \[data_request.test\] group"):
        h.test()
    with pytest.raises(ConfigError, match=r"Inference needs a \[data_request.infer\] group"):
        h.infer()


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


def test_list_registries_name_the_builtins_and_your_own_classes():
    import numpy as np
    from torch import nn

    from hyrax.datasets import HyraxDataset
    from hyrax.models import hyrax_model
    from hyrax.plugins import DATASETS, MODELS

    h = Hyrax(setup_logging=False)
    assert {"HyraxAutoencoder", "HyraxCNN", "HyraxLoopback", "HSCAutoencoder"} <= set(h.list_models())
    assert {"DecalsRingsDataset", "HyraxRandomDataset", "ResultDataset"} <= set(h.list_dataset_classes())

    @hyrax_model
    class ListedModel(nn.Module):
        def __init__(self, config, data_sample=None):
            super().__init__()

        @staticmethod
        def prepare_inputs(batch):
            return np.zeros(1)

    class ListedData(HyraxDataset):
        def __len__(self):
            return 1

    try:
        assert "ListedModel" in h.list_models() and "ListedData" in h.list_dataset_classes()
    finally:
        MODELS.unregister("ListedModel")
        DATASETS.unregister("ListedData")


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


def test_published_raw_data_dimensions_reads_the_download_manifest(tmp_path):
    """h.raw_data_dimensions() as published: (widths, heights) of the cutouts downloaded into
    general.data_dir, one pair per file; failed downloads have none."""
    from hyrax.download.manifest import PartWriter, consolidate, locked

    h = Hyrax(setup_logging=False)
    h.set_config("general.data_dir", str(tmp_path))
    assert h.raw_data_dimensions() == ([], [])
    rows = [
        {
            "object_id": "1",
            "filter": "HSC-G",
            "status": "done",
            "file": "1_G.fits",
            "width": 64,
            "height": 60,
        },
        {
            "object_id": "1",
            "filter": "HSC-R",
            "status": "done",
            "file": "1_R.fits",
            "width": 63,
            "height": 61,
        },
        {"object_id": "2", "filter": "HSC-G", "status": "failed", "reason": "HTTP 404"},
    ]
    with locked(tmp_path):
        PartWriter(tmp_path).write(rows)
        consolidate(tmp_path)
    widths, heights = h.raw_data_dimensions()
    assert (widths, heights) == ([64, 63], [60, 61]) and type(widths[0]) is int

"""Resolution, merge order, strict validation and set_config."""

from __future__ import annotations

import sys
import textwrap
import warnings

import pytest

from hyrax.config import ConfigManager, get_setting
from hyrax.errors import ConfigError, ConfigKeyError, ConfigStrictnessWarning


# -- resolution ------------------------------------------------------------------------------------
def test_defaults_only_when_no_file_anywhere():
    manager = ConfigManager()
    assert manager.config_file is None
    assert manager.config["train"]["epochs"] == 10


def test_local_hyrax_config_is_used_when_no_file_given(_isolated_cwd):
    (_isolated_cwd / "hyrax_config.toml").write_text("[train]\nepochs = 3\n")
    manager = ConfigManager()
    assert manager.config_file.name == "hyrax_config.toml"
    assert manager.config["train"]["epochs"] == 3


def test_explicit_file_beats_local_file(_isolated_cwd, write_config):
    (_isolated_cwd / "hyrax_config.toml").write_text("[train]\nepochs = 3\n")
    explicit = write_config("[train]\nepochs = 7\n")
    assert ConfigManager(explicit).config["train"]["epochs"] == 7


def test_missing_explicit_file_is_an_error_never_ignored(_isolated_cwd):
    (_isolated_cwd / "hyrax_config.toml").write_text("[train]\nepochs = 3\n")
    with pytest.raises(ConfigError) as error:
        ConfigManager("no_such_config.toml")
    assert "no_such_config.toml" in str(error.value)
    assert "does not exist" in str(error.value)


def test_toml_syntax_error_names_the_file(write_config):
    path = write_config("[train\nepochs = 3\n")
    with pytest.raises(ConfigError, match="is not valid TOML") as error:
        ConfigManager(path)
    assert str(path) in str(error.value)


# -- merge order with an external plugin package ---------------------------------------------------
@pytest.fixture
def plugin_package(tmp_path, monkeypatch):
    """A tiny external package `hyrax_test_plugin` shipping a default_config.toml."""
    root = tmp_path / "site"
    package = root / "hyrax_test_plugin"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('config loading must not import plugins')\n")
    (package / "default_config.toml").write_text(
        textwrap.dedent(
            """
            [train]
            epochs = 20

            [model.MyModel]
            # Width of the hidden layer.
            hidden = 16
            depth = 2
            """
        )
    )
    monkeypatch.syspath_prepend(str(root))
    yield "hyrax_test_plugin"
    sys.modules.pop("hyrax_test_plugin", None)


def test_merge_order_defaults_plugin_user_set_config(plugin_package, write_config):
    path = write_config(
        """
        [model]
        name = "hyrax_test_plugin.models.MyModel"

        [model.MyModel]
        depth = 5
        """
    )
    manager = ConfigManager(path)
    config = manager.config
    assert config["train"]["epochs"] == 20  # plugin beats packaged default (10)
    assert config["model"]["MyModel"]["hidden"] == 16  # from the plugin
    assert config["model"]["MyModel"]["depth"] == 5  # user beats plugin
    assert config["train"]["shuffle"] is True  # packaged default kept
    manager.set_config("model.MyModel.depth", 9)  # set_config beats the user's file
    assert config["model"]["MyModel"]["depth"] == 9


def test_plugin_table_types_are_checked_and_unknown_keys_warn(plugin_package, write_config):
    path = write_config(
        """
        [model]
        name = "hyrax_test_plugin.models.MyModel"
        [model.MyModel]
        hiden = 3
        """
    )
    with pytest.warns(
        ConfigStrictnessWarning, match=r"model\.MyModel\.hiden.*Did you mean 'model\.MyModel\.hidden'"
    ):
        ConfigManager(path)
    bad_type = write_config(
        """
        [model]
        name = "hyrax_test_plugin.models.MyModel"
        [model.MyModel]
        hidden = "wide"
        """,
        name="bad.toml",
    )
    with pytest.raises(ConfigError, match=r"'model\.MyModel\.hidden'.*must be an integer"):
        ConfigManager(bad_type)


def test_set_config_of_a_plugin_name_brings_its_defaults(plugin_package):
    manager = ConfigManager()
    manager.set_config("model.name", "hyrax_test_plugin.models.MyModel")
    assert manager.config["model"]["MyModel"]["hidden"] == 16
    assert manager.config["train"]["epochs"] == 10  # a value already resolved is not replaced


def test_help_covers_plugin_keys(plugin_package, write_config):
    path = write_config('[model]\nname = "hyrax_test_plugin.models.MyModel"\n')
    text = ConfigManager(path).help("model.MyModel.hidden")
    assert "Width of the hidden layer." in text


# -- strictness ------------------------------------------------------------------------------------
def test_unknown_key_names_full_key_and_suggests(write_config):
    path = write_config("[train]\nepocs = 3\n")
    with pytest.raises(ConfigError) as error:
        ConfigManager(path)
    message = str(error.value)
    assert "'train.epocs'" in message
    assert "Did you mean 'train.epochs'?" in message
    assert str(path) in message


def test_unknown_key_in_wrong_section_suggests_its_home(write_config):
    path = write_config("[train]\nbatch_size = 64\n")
    with pytest.raises(ConfigError, match=r"'train\.batch_size'.*Did you mean 'data_loader\.batch_size'"):
        ConfigManager(path)


def test_unknown_nested_key_and_unknown_section(write_config):
    path = write_config("[model.HyraxAutoencoder]\nlatent_dims = 8\n[trian]\nepochs = 1\n")
    with pytest.raises(ConfigError) as error:
        ConfigManager(path)
    message = str(error.value)
    assert "2 problem(s)" in message
    assert "Did you mean 'model.HyraxAutoencoder.latent_dim'?" in message
    assert "'trian'" in message and "Did you mean 'train'?" in message


def test_moved_key_error_says_where_it_went():
    manager = ConfigManager()
    with pytest.raises(ConfigError, match=r"'data_loader\.shuffle'.*use 'train\.shuffle'"):
        manager.set_config("data_loader.shuffle", True)


@pytest.mark.parametrize(
    ("line", "expected", "got"),
    [
        ('epochs = "ten"', "an integer", "a string"),
        ("epochs = 2.5", "an integer", "a float"),
        ("epochs = [1, 2]", "an integer", "an array"),
        ("shuffle = 1", "a boolean", "an integer"),
    ],
)
def test_wrong_type_is_an_error(write_config, line, expected, got):
    path = write_config(f"[train]\n{line}\n")
    with pytest.raises(ConfigError) as error:
        ConfigManager(path)
    message = str(error.value)
    assert "'train." in message and f"must be {expected}" in message and f"({got})" in message


def test_table_versus_scalar_is_an_error(write_config):
    with pytest.raises(ConfigError, match=r"'train'.*must be a table.*\(an integer\)"):
        ConfigManager(write_config("train = 3\n"))
    with pytest.raises(ConfigError, match=r"'train\.epochs'.*must be an integer.*\(a table\)"):
        ConfigManager(write_config("[train.epochs]\nvalue = 3\n", name="b.toml"))


def test_integer_is_accepted_for_a_float_and_false_keys_take_anything(write_config):
    path = write_config(
        """
        ["torch.optim.Adam"]
        lr = 1
        [train]
        resume = "/some/checkpoint.pt"
        [data_set]
        crop_to = [32, 32]
        """
    )
    config = ConfigManager(path).config
    assert config["torch.optim.Adam"]["lr"] == 1
    assert get_setting(config, "data_set.crop_to") == [32, 32]


def test_choice_keys_are_checked(write_config):
    with pytest.raises(ConfigError, match=r"general\.log_level.*must be one of.*'debug'.*got \"loud\""):
        ConfigManager(write_config('[general]\nlog_level = "loud"\n'))


def test_free_form_tables_are_exempt(write_config):
    path = write_config(
        """
        [split]
        train = 0.6
        validate = 0.2
        [label]
        classes = ["ring", "other"]
        [balance.distribution]
        ring = 0.5
        ["torch.optim.AdamW"]
        weight_decay = 0.01
        ["torch.optim.SGD"]
        nesterov = true
        [model.MyNotebookModel]
        anything = "goes"
        [data_set.MyDataset]
        rows = 3
        [reduce_dimensions.umap.kwargs]
        metric = "cosine"
        """
    )
    config = ConfigManager(path).config
    assert config["split"]["train"] == 0.6
    assert config["torch.optim.AdamW"]["weight_decay"] == 0.01
    assert config["model"]["MyNotebookModel"]["anything"] == "goes"


def test_dev_mode_turns_errors_into_warnings(write_config):
    path = write_config('[general]\ndev_mode = true\n[train]\nepocs = 3\nepochs = "x"\n')
    with pytest.warns(ConfigStrictnessWarning) as caught:
        manager = ConfigManager(path)
    messages = " ".join(str(w.message) for w in caught)
    assert "train.epocs" in messages and "train.epochs" in messages
    assert manager.config["train"]["epocs"] == 3


def test_missing_key_read_raises_with_suggestion():
    config = ConfigManager().config
    with pytest.raises(ConfigKeyError) as error:
        config["train"]["epocs"]
    assert "'train.epocs' does not exist" in str(error.value)
    assert "Did you mean 'epochs'?" in str(error.value)
    assert isinstance(error.value, KeyError)


def test_get_setting_reads_false_as_not_set():
    config = ConfigManager().config
    assert get_setting(config, "model.name") is None
    assert get_setting(config, "train.epochs") == 10
    assert get_setting(config, "'torch.optim.SGD'.lr") == 0.01
    with pytest.raises(ConfigKeyError, match="train.nope"):
        get_setting(config, "train.nope")


# -- set_config ------------------------------------------------------------------------------------
def test_set_config_dotted_and_quoted_keys():
    manager = ConfigManager()
    manager.set_config("train.epochs", 4)
    manager.set_config("'torch.optim.Adam'.lr", 0.5)
    manager.set_config('"torch.optim.SGD".momentum', 0.1)
    manager.set_config("model.HyraxAutoencoder.latent_dim", 16)
    config = manager.config
    assert config["train"]["epochs"] == 4
    assert config["torch.optim.Adam"]["lr"] == 0.5
    assert config["torch.optim.SGD"]["momentum"] == 0.1
    assert config["model"]["HyraxAutoencoder"]["latent_dim"] == 16


def test_set_config_new_kwargs_table_and_table_values():
    manager = ConfigManager()
    manager.set_config("'torch.optim.AdamW'.weight_decay", 0.01)
    manager.set_config("train", {"epochs": 2})  # merged into [train], other keys kept
    assert manager.config["torch.optim.AdamW"] == {"weight_decay": 0.01}
    assert manager.config["train"]["epochs"] == 2 and manager.config["train"]["shuffle"] is True


def test_set_config_rejects_bad_values_and_leaves_config_unchanged():
    manager = ConfigManager()
    with pytest.raises(ConfigError, match=r"'train\.epocs'.*Did you mean 'train\.epochs'"):
        manager.set_config("train.epocs", 3)
    with pytest.raises(ConfigError, match=r"'train\.epochs' \(set with set_config\) must be an integer"):
        manager.set_config("train.epochs", "three")
    assert manager.config["train"]["epochs"] == 10
    assert "epocs" not in manager.config["train"]


@pytest.mark.parametrize("key", ["", "train.", ".epochs", "'torch.optim.Adam.lr", "'a'b.c"])
def test_malformed_keys_are_errors(key):
    with pytest.raises(ConfigError):
        ConfigManager().set_config(key, 1)


def test_set_config_keeps_the_config_object_identity():
    manager = ConfigManager()
    config = manager.config
    manager.set_config("train.epochs", 5)
    assert config is manager.config and config["train"]["epochs"] == 5


# -- data_request schema ---------------------------------------------------------------------------
def test_valid_data_request_loads(write_config):
    path = write_config(
        """
        [data_request.train.images]
        dataset_class = "HyraxRandomDataset"
        data_location = "./data"
        fields = ["image", "label"]
        primary_id_field = "object_id"
        [data_request.train.catalog]
        dataset_class = "HyraxCSVDataset"
        data_location = "./cat.csv"
        join_field = "object_id"
        dataset_config = { size = 3 }
        [data_request.infer.images]
        dataset_class = "HyraxRandomDataset"
        """
    )
    config = ConfigManager(path).config
    assert set(config["data_request"]) == {"train", "infer"}


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        (
            '[data_request.train.images]\ndataset_clas = "X"\n',
            ["data_request.train.images", "dataset_clas", "Did you mean 'dataset_class'"],
        ),
        (
            "[data_request.train.images]\nfields = []\n",
            ["data_request.train.images", "no dataset_class", "non-empty"],
        ),
        (
            '[data_request.train.images]\ndataset_class = "X"\nfields = "image"\n',
            ["'fields' in data_request.train.images", "list of field names"],
        ),
        (
            '[data_request.train.a]\ndataset_class = "X"\nprimary_id_field = "id"\n'
            '[data_request.train.b]\ndataset_class = "Y"\nprimary_id_field = "id"\n',
            ["[data_request.train]", "2 primary datasets (a, b)", "exactly one"],
        ),
        (
            '[data_request.train.a]\ndataset_class = "X"\n[data_request.train.b]\ndataset_class = "Y"\n',
            ["[data_request.train]", "none sets primary_id_field"],
        ),
        ('[data_request.train]\ndataset_class = "X"\n', ["[data_request.train.data]", "friendly name"]),
    ],
)
def test_data_request_errors_name_group_and_dataset(write_config, toml, words):
    with pytest.raises(ConfigError) as error:
        ConfigManager(write_config(toml))
    for word in words:
        assert word in str(error.value)


def test_data_request_group_is_replaced_whole_by_set_config():
    manager = ConfigManager()
    manager.set_config("data_request.train.a", {"dataset_class": "X", "primary_id_field": "id"})
    manager.set_config("data_request.train", {"b": {"dataset_class": "Y"}})
    assert list(manager.config["data_request"]["train"]) == ["b"]


def test_no_warnings_for_the_defaults():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ConfigManager()


def test_set_config_over_write_replaces_what_was_set_and_keeps_defaults():
    """The published Hyrax's set_config(..., over_write=True)."""
    from hyrax import Hyrax

    h = Hyrax(setup_logging=False)
    h.set_config("split", {"train": 0.6, "validate": 0.2})
    h.set_config("split", {"train": 0.5}, over_write=True)
    assert h.config["split"]["train"] == 0.5
    assert "validate" not in h.config["split"]  # what was set before is gone (it has no default)
    assert "rng_seed" in h.config["split"]  # keys never set keep their defaults


def test_a_table_replaced_by_hand_keeps_its_defaults_for_the_next_verb(monkeypatch):
    """h.config["split"] = {...} (as published examples do) used to crash the next verb on split.rng_seed."""
    from hyrax import Hyrax, plugins

    seen = {}

    class Probe:
        def __init__(self, config):
            seen["config"] = config

        def run(self):
            return seen["config"]["split"]["rng_seed"]

    monkeypatch.setitem(plugins.VERBS._entries, "probe_verb", plugins._Entry("probe_verb", Probe, None, ""))
    h = Hyrax(setup_logging=False)
    h.config["split"] = {"train": 0.5}
    assert h._run_verb("probe_verb") == Hyrax(setup_logging=False).config["split"]["rng_seed"]
    assert seen["config"]["split"]["train"] == 0.5

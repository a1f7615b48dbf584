"""Keys of the published Hyrax (PyPI ``hyrax`` 0.13) that this Hyrax names differently or does not need.

A user's config written for the published Hyrax (its ``hyrax_default_config.toml``, a
``runtime_config.toml`` from one of its runs, keys set in a notebook) loads here unchanged:

* a **renamed** key is read as its new name here (``reduce_dimensions.algorithm`` ->
  ``reduce_dimensions.name``);
* a key with **no effect** here is dropped, silently when it holds the published default (so a copy of
  the published defaults loads quietly) and with a warning that says what to do when it does not.

Every translation of a value the user changed is a :class:`~hyrax.errors.ConfigMigrationWarning` that
names the key to write instead; docs/migration.md lists them all.

>>> config = {"reduce_dimensions": {"algorithm": "pca", "save_fit_model": True}}
>>> print(*translate(config))
reduce_dimensions.algorithm -> reduce_dimensions.name: write name = "pca" under [reduce_dimensions].
>>> config
{'reduce_dimensions': {'name': 'pca'}}
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

from hyrax.config.keys import join_key, split_key

#: Published key -> the key that holds it here. The value keeps its meaning.
RENAMED: dict[str, str] = {
    "reduce_dimensions.algorithm": "reduce_dimensions.name",
    "balance.field": "label.field",
}

#: The published default of each renamed key: a value equal to it is moved without a warning.
RENAMED_DEFAULTS: dict[str, Any] = {
    "reduce_dimensions.algorithm": "umap",
    "balance.field": False,
}

_UNUSED_MODEL_KEY = "this Hyrax's {model} does not read it; delete the key"

#: Published key -> (its published default, what to do instead). These keys change nothing here.
NO_EFFECT: dict[str, tuple[Any, str]] = {
    "reduce_dimensions.save_fit_model": (True, "the fitted reducer is always saved in the run directory"),
    "vector_db.qdrant.vector_size": (64, "the vector size is read from the inference results"),
    "vector_db.chromadb.vector_size_warning": (10000, "delete the key"),
    "criterion.band_loss_reduction": ("mean", "set the reduction in your model's criterion instead"),
    "train.split": ("train", 'training always reads the [data_request] group "train"'),
    "infer.split": (False, 'inference reads the [data_request] group "infer"'),
    "test.experiment_name": ("notebook", "test results are logged with train.experiment_name"),
    "test.run_name": (False, "the test run is named after its results directory"),
    "data_loader.collate_fn": (False, "write collate_<field> methods on the dataset class instead"),
    "balance.groups": ([], 'set balance.enabled = true to rebalance the "train" group'),
    "model.HyraxAutoencoderV2.final_layer": ("tanh", _UNUSED_MODEL_KEY.format(model="HyraxAutoencoderV2")),
    "model.ImageDCAE.base_channel_size": (32, _UNUSED_MODEL_KEY.format(model="ImageDCAE")),
    "model.ImageDCAE.final_layer": ("identity", _UNUSED_MODEL_KEY.format(model="ImageDCAE")),
    "model.SimCLR.horizontal_flip_probability": (0.5, _UNUSED_MODEL_KEY.format(model="SimCLR")),
    "model.SimCLR.color_jitter_params": ([0.8, 0.8, 0.8, 0.2], _UNUSED_MODEL_KEY.format(model="SimCLR")),
    "model.SimCLR.color_jitter_probability": (0.8, _UNUSED_MODEL_KEY.format(model="SimCLR")),
    "model.SimCLR.grayscale_probability": (0.2, _UNUSED_MODEL_KEY.format(model="SimCLR")),
    "model.SimCLR.gaussian_blur_kernel_size": (9, _UNUSED_MODEL_KEY.format(model="SimCLR")),
    "model.SimCLR.gaussian_blur_sigma_range": ([0.1, 2.0], _UNUSED_MODEL_KEY.format(model="SimCLR")),
    "visualize.fields": ([], "the map shows every metadata column; colour it with visualize.color_column"),
    "visualize.display_images": (False, "the map always shows the images of selected points"),
    "visualize.cmap": ("viridis", "delete the key"),
    "visualize.torch_tensor_bands": ([3], "set visualize.band"),
    "visualize.rasterize_plot": (False, "the map draws density images for large runs by itself"),
    "visualize_v2.buffer_factor": (0.2, "visualize_v2 is this Hyrax's visualize; delete the key"),
    "visualize_v2.cmap": ("Viridis", "visualize_v2 is this Hyrax's visualize; delete the key"),
    "visualize_v2.max_table_rows": (1000, "visualize_v2 is this Hyrax's visualize; delete the key"),
    "visualize_v2.num_detail_plots": (6, "visualize_v2 is this Hyrax's visualize; delete the key"),
    "visualize_v2.plot_height": (1000, "visualize_v2 is this Hyrax's visualize; delete the key"),
    "visualize_v2.plot_width": (1000, "visualize_v2 is this Hyrax's visualize; delete the key"),
    "visualize_v2.target_bins": (50, "visualize_v2 is this Hyrax's visualize; delete the key"),
}

#: Published values that mean "not set" where this Hyrax writes false.
_UNSET_VALUES: dict[str, Any] = {"model.name": ""}


def translate(config: MutableMapping) -> list[str]:
    """Rewrite published-Hyrax keys in ``config`` (a whole config, or part of one) in place.

    Returns one message for each value the user changed from the published default (the warnings to
    show). A renamed key wins over the key it is renamed to: it is only there because the user wrote it.
    """
    messages: list[str] = []
    for dotted, new in RENAMED.items():
        found, value = _pop(config, dotted)
        if not found:
            continue
        changed = value != RENAMED_DEFAULTS.get(dotted)
        _set(config, new, value)
        if changed:
            table, leaf = new.rsplit(".", 1)
            messages.append(f"{dotted} -> {new}: write {leaf} = {_show(value)} under [{table}].")
    for dotted, (default, instead) in NO_EFFECT.items():
        found, value = _pop(config, dotted)
        if found and value != default:
            messages.append(f"{dotted} = {_show(value)} has no effect in this Hyrax: {instead}.")
    for dotted, unset in _UNSET_VALUES.items():
        present, value = _get(config, dotted)
        if present and value == unset:
            _set(config, dotted, False)
    _drop_empty(config, ("visualize_v2",))
    return messages


def _get(config: Mapping, dotted: str) -> tuple[bool, Any]:
    table: Any = config
    for segment in split_key(dotted):
        if not isinstance(table, Mapping) or segment not in table:
            return False, None
        table = table[segment]
    return True, table


def _pop(config: MutableMapping, dotted: str) -> tuple[bool, Any]:
    *parents, leaf = split_key(dotted)
    present, table = _get(config, join_key(parents)) if parents else (True, config)
    if not present or not isinstance(table, MutableMapping) or leaf not in table:
        return False, None
    return True, table.pop(leaf)


def _set(config: MutableMapping, dotted: str, value: Any) -> None:
    *parents, leaf = split_key(dotted)
    table = config
    for segment in parents:
        table = table.setdefault(segment, {})
    table[leaf] = value


def _drop_empty(config: MutableMapping, tables: tuple[str, ...]) -> None:
    for name in tables:
        if isinstance(config.get(name), Mapping) and not config[name]:
            del config[name]


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)

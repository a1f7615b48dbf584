"""``test``: evaluate trained weights on the test group: its outputs in a results table, its metrics."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from hyrax.verbs.verb import Verb

#: Written in the test run directory: the mean of each metric the model's test_batch returned.
METRICS_FILE = "test_metrics.toml"


class TestVerb(Verb):
    __test__ = False  # not a pytest test class

    name = "test"
    summary = "Evaluate the trained model on the test group: outputs (Lance) and test_batch metrics in a run directory."

    def run(self, trace: int | None = None):
        """Evaluate; return a :class:`~hyrax.results.store.ResultDataset` of the model's outputs (one row
        per test object, as ``infer`` writes), with the mean of each ``test_batch`` metric in ``.metrics``
        (also in ``test_metrics.toml``).

        The test objects are the ones the weights' train run held out (its ``test_split.npz``) when it
        has them, else the test group's share of ``[split]``. Weights: ``test.model_weights_file`` (a
        file or a train run directory), else the latest train run's. The model's ``test_batch`` gives
        the metrics; without one, ``validate_batch``. ``trace=N``: N test objects, recorded; returns a
        :class:`hyrax.trace.TraceResult`.
        """
        from hyrax.training.distributed import refuse_several_processes

        refuse_several_processes(self.name)  # under torchrun or srun -n N each would redo the whole run
        if trace:
            from hyrax.trace import TraceContext, get_trace

            with TraceContext(trace, self.config):
                self.config["split"] = {**self.config.get("split", {})}
                self._limit = int(trace)
                self.run()
                return get_trace()
        import tomlkit
        import torch

        from hyrax.datasets.loader import Skips, loader_from_config
        from hyrax.models.model import to_torch
        from hyrax.progress import Progress
        from hyrax.results.run_dir import write_text_atomic
        from hyrax.results.store import ResultDataset, ResultWriter
        from hyrax.training.inference import (
            SKIPPED_FILE,
            RowSampler,
            load_model,
            outputs_to_numpy,
            weights_location,
        )
        from hyrax.training.loop import call_epoch_hook

        provider, indices = test_provider(self.config)
        weights = weights_location(self.config, "test.model_weights_file")
        indices = _held_out(weights.parent, indices, len(provider))[: getattr(self, "_limit", None)]
        model, prepare = load_model(self.config, provider, int(indices[0]), weights)
        metric_of = getattr(model, "test_batch", None) or getattr(model, "validate_batch", None)
        provider.start_epoch("test", 0)
        totals: dict[str, float] = {}
        counted = 0
        with self.create_run_dir() as run:
            model.save(run.path / "test_weights.pth")
            skips = Skips(run.path / SKIPPED_FILE)
            loader = loader_from_config(self.config, provider, RowSampler(indices), skips)
            writer = None
            with Progress("test", total=len(indices)) as progress, torch.inference_mode():
                for batch in loader:
                    tensors = to_torch(prepare(batch))
                    outputs = outputs_to_numpy(model.infer_batch(tensors))
                    if writer is None:
                        writer = ResultWriter(
                            run.path, *ResultWriter.layout_of(outputs)
                        )  # a dict: a column a key
                    writer.write(batch["object_id"], outputs)
                    count = len(batch["object_id"])
                    if callable(metric_of):
                        for key, value in _numbers(metric_of(tensors)).items():
                            totals[key] = totals.get(key, 0.0) + value * count
                        counted += count
                    progress.update(count)
                call_epoch_hook(model, "test_post_epoch")
            if writer is not None:
                writer.close()
            metrics = {key: total / counted for key, total in totals.items()} if counted else {}
            write_text_atomic(
                run.path / METRICS_FILE,
                tomlkit.dumps({"weights": str(weights), "objects": int(len(indices)), "metrics": metrics}),
            )
        results = ResultDataset(self.config, run.path)
        results.metrics = metrics
        self.message = ", ".join(f"test {k} {v:.5g}" for k, v in metrics.items()) or "no test_batch metrics"
        return results

    def run_cli(self, args: argparse.Namespace) -> int:
        results = self.run()
        print(self.message)
        print(f"{len(results)} outputs in {results.table_path}")
        return 0


def test_provider(config: Mapping):
    """The test group's provider and its rows from ``[split]`` (computed with the groups that share its
    data, as training computes them)."""
    from hyrax.datasets.provider import DataProvider
    from hyrax.datasets.splits import compute_splits
    from hyrax.errors import ConfigError

    request = config.get("data_request", {})
    if "test" not in request:
        raise ConfigError(
            "Testing needs a [data_request.test] group: the held-out objects to evaluate on. Groups: "
            f"{', '.join(request) or '(none)'}. Add [data_request.test.data] (it may share the train "
            "group's dataset, with [split] test = 0.2)."
        )
    groups = [g for g in ("train", "validate", "test") if g in request]
    providers = {g: DataProvider(config, g) for g in groups}
    indices = compute_splits(config, providers).indices["test"]
    if not len(indices):
        raise ConfigError("The test group has no objects after splitting; check [split] test.")
    return providers["test"], indices


def _held_out(train_run: Path, computed: np.ndarray, length: int) -> np.ndarray:
    """The test rows the weights' train run saved (exactly what it held out), else ``computed``."""
    saved = train_run / "test_split.npz"
    if not saved.is_file():
        return computed
    with np.load(saved) as data:
        rows = data["indices"]
    return rows if len(rows) and int(rows.max()) < length else computed


def _numbers(output) -> dict[str, float]:
    """The numeric entries of a test_batch result (a dict, or one number)."""
    items = output.items() if isinstance(output, Mapping) else [("loss", output)]
    numbers = {}
    for key, value in items:
        try:
            numbers[str(key)] = float(value.item() if hasattr(value, "item") else value)
        except (TypeError, ValueError):
            continue
    return numbers

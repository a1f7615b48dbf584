"""What the map tests share."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_map_run(directory: Path, coordinates: np.ndarray) -> Path:
    """A reduce_dimensions-like run (object ids p0, p1, ...) holding these 2-D or 3-D coordinates."""
    from hyrax.results.store import ResultWriter

    coordinates = np.asarray(coordinates, dtype=np.float32)
    with ResultWriter(directory, coordinates.shape[1:], "float32") as writer:
        writer.write(np.char.add("p", np.arange(len(coordinates)).astype(str)), coordinates)
    return directory


def write_catalog_map(directory: Path, coordinates: np.ndarray, datasets: dict, settings: dict | None = None):
    """A map whose objects have a catalog: an inference run (its vectors: these coordinates) reading
    ``datasets`` as its ``[data_request.infer]`` (object ids from the primary one), and a map of it.
    ``settings``: other config keys of the inference run ("data_set.lightcurve": {...}). Returns
    (the config, the map run)."""
    import tomlkit

    from hyrax.config import ConfigManager
    from hyrax.datasets.provider import DataProvider
    from hyrax.results.run_dir import RunDir
    from hyrax.results.store import ResultWriter

    manager = ConfigManager()
    manager.set_config("data_set.cache_dir", str(directory / "cache"))
    for key, value in (settings or {}).items():
        manager.set_config(key, value)
    for name, spec in datasets.items():
        manager.set_config(f"data_request.infer.{name}", spec)
    provider = DataProvider(manager.config, "infer")
    ids = provider.ids_at(np.arange(len(provider)))
    coordinates = np.asarray(coordinates, dtype=np.float32)[: len(ids)]
    infer = directory / "infer"
    with ResultWriter(infer, coordinates.shape[1:], "float32") as writer:
        writer.write(np.asarray(ids).astype(str), coordinates)
    RunDir(infer).write_config(manager.config)
    run = directory / "map"
    with ResultWriter(run, coordinates.shape[1:], "float32") as writer:
        writer.write(np.asarray(ids).astype(str), coordinates)
    (run / "source.toml").write_text(tomlkit.dumps({"infer_run": str(infer)}))
    return manager.config, run


def radio_catalog(path: Path, count: int = 300, seed: int = 0) -> Path:
    """A CSV catalog as radio surveys give them: a redshift ``z``, a text class ``fr_class`` and a
    heavy-tailed ``flux`` (Jy)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "object_id": [f"J{i:04d}" for i in range(count)],
            "z": np.round(rng.uniform(0.02, 0.6, count), 3),
            "fr_class": rng.choice(["FRI", "FRII", "compact", "bent"], count, p=[0.4, 0.3, 0.2, 0.1]),
            "flux": rng.lognormal(-6, 1.5, count),
        }
    )
    frame.loc[0, "z"] = 0.154
    frame.to_csv(path, index=False)
    return path

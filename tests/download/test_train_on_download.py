"""Downloaded cutouts are a dataset: HSCDataset reads them through [data_request] and a model trains on them."""

from __future__ import annotations

import numpy as np

from tests.download.das_server import expected_pixels


def test_download_then_train_one_epoch(service, catalog, hyrax_download, tmp_path):
    path, table = catalog(24)
    h = hyrax_download(service(), path)
    assert h.download().ok
    data = str(tmp_path / "data")
    for group in ("train", "validate"):
        h.set_config(f"data_request.{group}.cutouts", {"dataset_class": "HSCDataset", "data_location": data})
    h.set_config("split.train", 0.75)
    h.set_config("model.name", "HyraxAutoencoder")
    h.set_config("model.HyraxAutoencoder.latent_dim", 4)
    h.set_config("model.HyraxAutoencoder.base_channel_size", 4)
    h.set_config("train.epochs", 1)
    h.set_config("data_loader.batch_size", 8)
    h.set_config("data_loader.num_workers", 0)
    h.set_config("data_set.seed", 3)

    providers = h.prepare()
    dataset = providers["train"].datasets["cutouts"]
    assert len(dataset) == 24 and dataset.filters == ["HSC-G", "HSC-I"]
    first = table.set_index("object_id").loc[str(dataset.object_ids[0])]
    image = dataset.get_image(0)
    assert image.shape == (2, 32, 32)
    # the served pixels, normalised as HSCDataset does by default: minus the median, over the noise, arcsinh
    served = expected_pixels(first.ra, first.dec, "HSC-I", (32, 32))
    noise = 1.4826 * np.median(np.abs(served - np.median(served)))
    assert np.allclose(image[1], np.arcsinh((served - np.median(served)) / noise), atol=1e-5)

    model = h.train()
    assert np.isfinite(model.final_training_metrics["training_loss"])
    assert (model.run_dir / "checkpoint_epoch_1.pt").is_file()

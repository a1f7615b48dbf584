"""HyraxTs2Vec (issue 28, item 3): the published TS2Vec model with its [model.HyraxTs2Vec] keys, on the
light curves our datasets give (tests/data/s82_rrlyrae/per_object: 40 real Stripe 82 RR Lyrae, one CSV
each; tests/data/crts_transients: 500 real CRTS transients with classes)."""

from __future__ import annotations

import importlib.util
import textwrap

import numpy as np
import pytest
import torch

from hyrax.config import ConfigManager
from hyrax.errors import ConfigError
from hyrax.models.model import ModelContractError
from hyrax.models.ts2vec import HyraxTs2Vec, InputSettings, encode_light_curves, timestep_mask
from tests.conftest import REPO

SMALL = {"output_dims": 16, "hidden_dims": 8, "depth": 2, "max_sequence_length": 32}


def small_config(**settings):
    manager = ConfigManager()
    for key, value in {**SMALL, **settings}.items():
        manager.set_config(f"model.HyraxTs2Vec.{key}", value)
    return manager.config


def lc_batch():
    """Two objects of a nested light-curve column (our datasets' ``lc`` dict), out of time order."""
    return {
        "object_id": np.array(["a", "b"]),
        "data": {
            "lc": {
                "mjd": np.array([[30.0, 10.0, 20.0, 0.0], [5.0, 6.0, 0.0, 0.0]]),
                "mjd_mask": np.array([[True, True, True, False], [True, True, False, False]]),
                "mag": np.array([[17.0, 15.0, 16.0, 0.0], [12.0, 12.0, 0.0, 0.0]]),
                "magerr": np.array([[0.2, 0.1, 0.1, 0.0], [0.3, 0.3, 0.0, 0.0]]),
                "band": np.array([["r", "g", "x", ""], ["g", "g", "", ""]]),
            }
        },
    }


def test_a_config_written_for_hyrax_013_trains_and_infers_on_light_curve_files(
    real_data, write_config, tmp_path
):
    """The published call: [model] name = "HyraxTs2Vec" with its keys, the fields named as a 0.13 user
    names them (<column>_<subfield>), a data request on a light-curve dataset; 2 epochs, then infer."""
    from hyrax import Hyrax

    folder = real_data / "s82_rrlyrae" / "per_object"
    request = f'dataset_class = "LightCurveDataset"\ndata_location = "{folder}"\nfields = ["lc"]'
    config = write_config(
        f"""
        [general]
        results_dir = "{tmp_path / "results"}"
        [model]
        name = "HyraxTs2Vec"
        [model.HyraxTs2Vec]
        output_dims = 16
        hidden_dims = 8
        depth = 2
        max_sequence_length = 32
        time_field = "lc_time"
        flux_field = "lc_mag"
        flux_err_field = "lc_magerr"
        band_field = "lc_band"
        bands = ["u", "g", "r", "i", "z"]
        [train]
        epochs = 2
        [data_loader]
        batch_size = 8
        [data_request.train.data]
        """
        + textwrap.indent(request, "        ")
        + "\n        [data_request.infer.data]\n"
        + textwrap.indent(request, "        ")
        + "\n"
    )
    h = Hyrax(config_file=str(config), setup_logging=False)
    model = h.train()
    assert isinstance(model, HyraxTs2Vec) and isinstance(model.optimizer, torch.optim.AdamW)
    assert np.isfinite(model.final_training_metrics["loss"])
    assert model.encoder.project.in_features == 3 + 5  # flux, error, gap + the five bands
    results = h.infer()
    vectors = results[np.arange(len(results))]
    assert len(results) == 40 and vectors.shape == (40, 16) and np.isfinite(vectors).all()
    assert sorted(results.ids()) == sorted(p.stem for p in folder.glob("*.csv"))
    assert np.ptp(vectors, axis=0).max() > 0  # not one vector for every object
    # The encoding's settings are pinned in the prepare_inputs.py saved with the weights.
    train_runs = sorted((tmp_path / "results").glob("*-train-*"))
    saved = (train_runs[-1] / "prepare_inputs.py").read_text()
    assert "def prepare_inputs" in saved and "'time_field': 'lc_time'" in saved


def test_the_event_sequence_of_a_nested_light_curve():
    settings = InputSettings.from_config(
        {
            **small_config()["model"]["HyraxTs2Vec"],
            "time_field": "lc_mjd",
            "flux_field": "lc.mag",
            "flux_err_field": "lc_magerr",
            "band_field": "lc_band",
            "bands": ["g", "r"],
            "max_sequence_length": 5,
        }
    )
    series = encode_light_curves(lc_batch(), settings)
    assert series.shape == (2, 5, 3 + 2) and series.dtype == np.float32
    # sorted by time: 15, 16, 17; median 16, MAD 1 -> (-1, 0, 1) / 1.4826; errors on the same scale
    assert series[0, :3, 0] == pytest.approx(np.array([-1, 0, 1]) / 1.4826, rel=1e-5)
    assert series[0, :3, 1] == pytest.approx(np.array([0.1, 0.1, 0.2]) / 1.4826, rel=1e-5)
    assert series[0, :3, 2] == pytest.approx(np.log1p([0, 10, 10]))  # gaps since the previous one
    assert series[0, :3, 3:].tolist() == [[1, 0], [0, 0], [0, 1]]  # g; "x" is no configured band; r
    assert np.isnan(series[0, 3:]).all() and np.isnan(series[1, 2:]).all()  # padding
    assert series[1, :2, 0].tolist() == [0.0, 0.0]  # a constant curve: centred, not divided by 0
    shorter = encode_light_curves(
        lc_batch(),
        InputSettings.from_config(
            {**settings.__dict__, "band_field": False, "normalize": False, "max_sequence_length": 2}
        ),
    )
    assert shorter.shape == (2, 2, 3) and shorter[0, :, 0].tolist() == [15.0, 16.0]  # the earliest kept


def test_fields_left_at_the_published_defaults_are_found_by_their_spellings():
    """The LSST default names are absent from our light curves: time/value/error/band are found."""
    series = encode_light_curves(
        lc_batch(), InputSettings.from_config(small_config()["model"]["HyraxTs2Vec"])
    )
    assert series.shape == (2, 32, 3 + 6) and series[0, 0, 3:].tolist() == [0, 1, 0, 0, 0, 0]


def test_a_field_named_but_absent_says_what_to_change():
    settings = small_config(time_field="lc_mjd", flux_field="lc_flux")["model"]["HyraxTs2Vec"]
    with pytest.raises(
        ModelContractError, match=r"no field for model.HyraxTs2Vec.flux_field = 'lc_flux'.*lc.mag"
    ):
        encode_light_curves(lc_batch(), InputSettings.from_config(settings))
    settings = small_config(time_field="obs_time")["model"]["HyraxTs2Vec"]
    with pytest.raises(
        ModelContractError, match=r"no 'obs_time' \(model.HyraxTs2Vec.time_field\).*lc.mjd.*lc_mjd"
    ):
        encode_light_curves(lc_batch(), InputSettings.from_config(settings))
    manager = ConfigManager()
    with pytest.raises(ConfigError, match=r"mask_mode' .*must be one of 'binomial'"):
        manager.set_config("model.HyraxTs2Vec.mask_mode", "random")
    manager.set_config("model.HyraxTs2Vec.band_field", False)  # one band: allowed
    with pytest.raises(ConfigError, match=r"band_field' .*must be a string"):
        manager.set_config("model.HyraxTs2Vec.band_field", 3)


def test_masked_timesteps_carry_nothing_and_inference_sees_every_observation():
    torch.manual_seed(0)
    x = torch.from_numpy(
        encode_light_curves(lc_batch(), InputSettings.from_config(small_config()["model"]["HyraxTs2Vec"]))
    )
    model = HyraxTs2Vec(small_config(), data_sample=x[:1].numpy()).eval()
    with torch.no_grad():
        nothing = model(torch.full_like(x, float("nan")))
        assert torch.allclose(model(x, mask="all_false"), nothing)  # every timestep hidden
        assert not torch.allclose(model(x), nothing)
        assert torch.equal(model.infer_batch(x), model.infer_batch(x))  # no mask, no dropout at inference
    keep = timestep_mask("binomial", 200, 64, "cpu")
    assert 0.4 < keep.float().mean() < 0.6
    spans = timestep_mask("continuous", 3, 100, "cpu")
    assert (spans.sum(dim=1) >= 50).all() and (spans.sum(dim=1) < 100).all()
    # the vector is the maximum over observed timesteps: more padding does not change it
    longer = torch.from_numpy(
        encode_light_curves(
            lc_batch(),
            InputSettings.from_config(small_config(max_sequence_length=64)["model"]["HyraxTs2Vec"]),
        )
    )
    with torch.no_grad():
        assert torch.allclose(model.infer_batch(x), model.infer_batch(longer), atol=1e-6)


def test_conformance_on_light_curves(real_data):
    from hyrax.testing import check_model

    manager = ConfigManager()
    for key, value in SMALL.items():
        manager.set_config(f"model.HyraxTs2Vec.{key}", value)
    manager.set_config(
        "data_request.train.data",
        {
            "dataset_class": "LightCurveDataset",
            "data_location": str(real_data / "s82_rrlyrae" / "per_object"),
        },
    )
    report = check_model(HyraxTs2Vec, manager.config)
    assert any("save/load" in line for line in report)


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "ts2vec_neighbours", REPO / "benchmarks" / "ts2vec_neighbours.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_neighbour_agreement_against_chance():
    measure = _benchmark().neighbour_agreement
    classes = np.array(["a"] * 6 + ["b"] * 6)
    separated = np.r_[np.zeros((6, 2)), np.ones((6, 2)) * 10] + np.random.default_rng(0).normal(
        0, 0.1, (12, 2)
    )
    agreement, chance = measure(separated, classes, k=5)
    assert agreement == 1.0 and chance == pytest.approx(5 / 11)


@pytest.mark.slow
def test_crts_latent_neighbours_share_their_class_above_chance(tmp_path):
    """Published settings on the 500 real CRTS transients, 2 epochs (benchmarks/ts2vec_neighbours.py, the
    figure in the docs): the 5 nearest neighbours share the class above the chance rate. ~10 min here."""
    found = _benchmark().measure(epochs=2, batch_size=16, k=5, seed=0, folder=tmp_path)
    assert found["objects"] == 500 and found["dims"] == 320 and found["finite"]
    agreement, chance = found["rows"]["trained"]["all"]
    assert agreement > 1.3 * chance, found["rows"]


def test_the_pooling_difference_from_the_published_model_is_said_once(caplog, monkeypatch):
    """Our vectors differ from 0.13's (padding is not pooled): said at run time, once per process."""
    import hyrax.models.ts2vec as ts2vec

    monkeypatch.setattr(ts2vec, "_POOLING_SAID", False)
    x = torch.from_numpy(
        encode_light_curves(lc_batch(), InputSettings.from_config(small_config()["model"]["HyraxTs2Vec"]))
    )
    model = HyraxTs2Vec(small_config(), data_sample=x[:1].numpy()).eval()
    with caplog.at_level("WARNING", logger="hyrax.models.ts2vec"), torch.no_grad():
        model.infer_batch(x)
        model.infer_batch(x)
    said = [r.getMessage() for r in caplog.records if "observed timesteps only" in r.getMessage()]
    assert len(said) == 1 and "max_sequence_length" in said[0]

"""Models: the ``@hyrax_model`` contract and the built-in models (registered lazily by name)."""

from __future__ import annotations

from hyrax.plugins import MODELS

BUILTIN_MODELS = {
    "HyraxLoopback": "hyrax.models.loopback:HyraxLoopback",
    "HyraxAutoencoder": "hyrax.models.autoencoder:HyraxAutoencoder",
    "HyraxAutoencoderV2": "hyrax.models.autoencoder:HyraxAutoencoderV2",
    "HyraxCNN": "hyrax.models.cnn:HyraxCNN",
    "ImageDCAE": "hyrax.models.dcae:ImageDCAE",
    "SimCLR": "hyrax.models.simclr:SimCLR",
    "HyraxTs2Vec": "hyrax.models.ts2vec:HyraxTs2Vec",
    "HSCAutoencoder": "hyrax.models.hsc:HSCAutoencoder",
    "HSCDCAE": "hyrax.models.hsc:HSCDCAE",
}


def load_builtins() -> None:
    for name, path in BUILTIN_MODELS.items():
        if name not in MODELS:
            MODELS.register(name, lazy=path)


load_builtins()


def __getattr__(name: str):
    # hyrax_model lives with torch-importing code; load it only when asked for.
    if name == "hyrax_model":
        from hyrax.models.model import hyrax_model

        return hyrax_model
    raise AttributeError(f"module 'hyrax.models' has no attribute '{name}'")


__all__ = ["hyrax_model", "load_builtins"]

"""``demo``: the whole pipeline on the 376 bundled DECaLS galaxies, in a few minutes on a laptop.

train (HyraxAutoencoder) -> infer -> reduce_dimensions (UMAP) -> save_to_database -> outliers -> a
standalone map page. It prints where each result is, the ten most unusual galaxies and the nearest
neighbours of a ring galaxy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hyrax.verbs.verb import Verb

GALAXIES = {"dataset_class": "DecalsRingsDataset"}


def demo_settings(results_dir: str, epochs: int) -> dict:
    return {
        "general.results_dir": results_dir,
        "model.name": "HyraxAutoencoder",
        "model.HyraxAutoencoder.latent_dim": 32,
        "data_request.train.galaxies": GALAXIES,
        "data_request.validate.galaxies": GALAXIES,
        "data_request.infer.galaxies": GALAXIES,
        "split.train": 0.8,
        "train.epochs": epochs,
        "optimizer.name": "torch.optim.Adam",  # not the published SGD default: trains this demo in 10 epochs
        "'torch.optim.Adam'.lr": 3e-3,
        "data_loader.batch_size": 32,
        "data_loader.num_workers": 0,
        "data_set.seed": 42,
        "reduce_dimensions.name": "umap",
        "reduce_dimensions.umap.fit_sample_size": 376,
        "visualize.color_column": "outlier_score",
    }


class DemoVerb(Verb):
    name = "demo"
    summary = (
        "Run the whole pipeline on the bundled galaxies: train, infer, map, index, outliers, standalone page."
    )

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--results-dir", default="./hyrax_demo", help="where the runs go (default ./hyrax_demo)"
        )
        parser.add_argument("--epochs", type=int, default=10, help="training epochs (default 10)")

    def run(self, results_dir: str = "./hyrax_demo", epochs: int = 10, say=print) -> dict:
        """Run every stage; return {stage: result}."""
        from hyrax import Hyrax

        h = Hyrax(setup_logging=False)
        for key, value in demo_settings(str(Path(results_dir).resolve()), epochs).items():
            h.set_config(key, value)
        done: dict = {}
        say("1/6 training HyraxAutoencoder on 376 DECaLS galaxies ...")
        done["model"] = h.train()
        say(f"    {done['model'].final_validation_metrics}; weights in {done['model'].run_dir}")
        say("2/6 inferring a 32-d latent vector per galaxy ...")
        done["results"] = h.infer()
        say(f"    {done['results'].table_path}")
        say("3/6 mapping the latent space with UMAP ...")
        done["map"] = h.reduce_dimensions()
        say(f"    {done['map'].table_path}")
        say("4/6 indexing the vectors for similarity search ...")
        done["database"] = h.save_to_database()
        say(f"    {done['database'].index.directory}")
        say("5/6 scoring outliers ...")
        done["outliers"] = h.outliers(top=10)
        say(
            done["outliers"][["rank", "object_id", "outlier_score", "ring", "ra", "dec"]].to_string(
                index=False
            )
        )
        ring = _first_ring(h.config)
        found = done["database"].search_by_id(ring, k=6)
        ids, distances = found[ring], found.distances[ring]
        say(
            f"    nearest neighbours of ring galaxy {ring}: "
            + ", ".join(f"{i} ({d:.3g})" for i, d in zip(ids[1:], distances[1:], strict=True))
        )
        say("6/6 writing the map page ...")
        page = Path(results_dir).resolve() / "hyrax_map.html"
        done["page"] = h.visualize().save(page)
        say(f"    open {page} in a browser (no server needed)")
        return done

    def run_cli(self, args: argparse.Namespace) -> int:
        self.run(args.results_dir, args.epochs)
        return 0


def _first_ring(config) -> str:
    from hyrax.datasets.decals_rings import DecalsRingsDataset

    galaxies = DecalsRingsDataset(config)
    return str(galaxies.column("object_id")[galaxies.column("ring") == 1][0])

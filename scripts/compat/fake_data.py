"""Local stand-ins for the data that upstream Hyrax notebooks download (no network here).

    python fake_data.py cifar DEST        # DEST/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}
    python fake_data.py hsc DEST          # DEST/<id>_coadd_<ra>_<dec>_<tract>_<filter>.fits + manifest.fits
    python fake_data.py plasticc OUT.pkl  # list of MMU-PLAsTiCC-like samples (lightcurve dict + obj_type)
    python fake_data.py mmu DEST          # Multimodal Universe Hub layouts (legacysurvey, desi, plasticc)
    python fake_data.py tess DEST         # HATS catalog shaped like LSDB's tess_lightcurve (nested lightcurve)
    python fake_data.py gaia DEST         # HATS catalog shaped like LSDB's gaia_dr3 (ra, dec, phot_g_mean_mag)
    python fake_data.py ztf_lc DEST       # HATS catalog shaped like IRSA's ZTF DR24 light curves
    python fake_data.py hats_points DEST  # HATS catalog of points (object_id, ra/dec and coord_ra/coord_dec)
    python fake_data.py cnn_weights OUT   # a HyraxCNN weights file as the published Hyrax saves it (CIFAR)
    python fake_data.py sl DEST           # strong-lensing challenge layout (5 FITS bands per object)
    python fake_data.py results DEST      # a results directory made by the hyrax under test (infer + umap)

Everything is seeded and small (CPU budget): CIFAR 5x200 train + 10000 test images in the real pickle
format; HSC 150 objects x 3 bands (HSC-G, HSC-R, HSC-I) of 48x48 with an upstream-style manifest.fits;
PLAsTiCC 400 light curves in 4 classes.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np

CIFAR_LABELS = [
    b"airplane",
    b"automobile",
    b"bird",
    b"cat",
    b"deer",
    b"dog",
    b"frog",
    b"horse",
    b"ship",
    b"truck",
]


def cifar(dest: str | Path, per_batch: int = 200, n_test: int = 10000, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    folder = Path(dest) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(n: int, name: bytes) -> dict:
        labels = rng.integers(0, 10, size=n)
        # A label-dependent mean colour so a classifier has something to learn.
        base = (labels[:, None] * 25 + rng.integers(0, 30, size=(n, 3072))).clip(0, 255)
        return {
            b"batch_label": name,
            b"labels": labels.tolist(),
            b"data": base.astype(np.uint8),
            b"filenames": [f"img_{i:05d}.png".encode() for i in range(n)],
        }

    for k in range(1, 6):
        with open(folder / f"data_batch_{k}", "wb") as f:
            pickle.dump(batch(per_batch, f"training batch {k} of 5".encode()), f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch(n_test, b"testing batch 1 of 1"), f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": CIFAR_LABELS, b"num_cases_per_batch": per_batch, b"num_vis": 3072}, f)
    return folder


def hsc(dest: str | Path, n: int = 150, size: int = 48, seed: int = 0) -> Path:
    from astropy.io import fits
    from astropy.table import Table

    rng = np.random.default_rng(seed)
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    rows = {
        k: []
        for k in (
            "tract",
            "ra",
            "dec",
            "sw",
            "sh",
            "filter",
            "type",
            "rerun",
            "image",
            "variance",
            "mask",
            "dim",
            "filename",
            "object_id",
        )
    }
    yy, xx = np.mgrid[0:size, 0:size] - size / 2
    for i in range(n):
        object_id = 36411452835238206 + i * 7919
        ra, dec, tract = 30.0 + rng.uniform(0, 2), -6.0 + rng.uniform(0, 2), 8279
        sigma = rng.uniform(1.5, 6.0)
        blob = np.exp(-(xx**2 + yy**2) / (2 * sigma**2))
        for band, gain in (("HSC-G", 0.6), ("HSC-R", 0.8), ("HSC-I", 1.0)):
            image = (gain * 5 * blob + rng.normal(0, 0.05, size=(size, size))).astype(np.float32)
            name = f"{object_id}_coadd_{ra:.5f}_{dec:.5f}_{tract}_{band}.fits"
            hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(image)])
            hdul.writeto(folder / name, overwrite=True)
            for key, value in (
                ("tract", tract),
                ("ra", ra),
                ("dec", dec),
                ("sw", 4.0 / 3600),
                ("sh", 4.0 / 3600),
                ("filter", band),
                ("type", "coadd"),
                ("rerun", "pdr3_wide"),
                ("image", True),
                ("variance", False),
                ("mask", False),
                ("dim", [size, size]),
                ("filename", name),
                ("object_id", object_id),
            ):
                rows[key].append(value)
    Table(rows).write(folder / "manifest.fits", overwrite=True, format="fits")
    return folder


def plasticc(out: str | Path, n: int = 400, seed: int = 0) -> Path:
    """Samples shaped like MultimodalUniverse/plasticc rows: {"lightcurve": {...}, "obj_type": str}."""
    rng = np.random.default_rng(seed)
    classes = ["SNIa", "SNII", "RRL", "AGN"]
    bands = np.array(["u", "g", "r", "i", "z", "Y"])
    samples = []
    for i in range(n):
        cls = int(rng.integers(0, len(classes)))
        length = int(rng.integers(20, 60))
        times = np.sort(rng.uniform(59580, 59800, size=length))
        peak = rng.uniform(59600, 59700)
        width = 10 + 15 * cls
        flux = (cls + 1) * 50 * np.exp(-((times - peak) ** 2) / (2 * width**2)) + rng.normal(0, 5, length)
        pad = 80 - length  # MMU zero-pads unused observation slots
        samples.append(
            {
                "lightcurve": {
                    "band": np.concatenate([rng.choice(bands, size=length), np.array(["u"] * pad)]).tolist(),
                    "time": np.concatenate([times, np.zeros(pad)]).tolist(),
                    "flux": np.concatenate([flux, np.zeros(pad)]).astype(np.float32).tolist(),
                    "flux_err": np.concatenate([np.full(length, 5.0), np.zeros(pad)])
                    .astype(np.float32)
                    .tolist(),
                },
                "obj_type": classes[cls],
                "object_id": str(i),
            }
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:
        pickle.dump(samples, f)
    return out


def mmu(dest: str | Path, n: int = 120, seed: int = 0) -> Path:
    """Multimodal Universe Hub layouts (data/train-0000k-of-00002.parquet)
    of legacysurvey (image struct + rgb), desi (spectrum struct) and plasticc (lightcurve struct),
    written with Hugging Face datasets, for a local data_location."""
    import datasets

    rng = np.random.default_rng(seed)
    root = Path(dest)

    def write(name, rows, features):
        table = datasets.Dataset.from_dict(rows, features=features)
        d = root / name / "data"
        d.mkdir(parents=True, exist_ok=True)
        half = len(table) // 2
        table.select(range(half)).to_parquet(str(d / "train-00000-of-00002.parquet"))
        table.select(range(half, len(table))).to_parquet(str(d / "train-00001-of-00002.parquet"))

    size = 32
    yy, xx = np.mgrid[0:size, 0:size] - size / 2
    flux = np.stack(
        [
            np.stack(
                [
                    g * np.exp(-(xx**2 + yy**2) / (2 * rng.uniform(1.5, 5) ** 2))
                    + rng.normal(0, 0.02, (size, size))
                    for g in (0.6, 0.8, 1.0)
                ]
            )
            for _ in range(n)
        ]
    ).astype(np.float32)
    rgb = [(np.clip(f.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8) for f in flux]
    write(
        "legacysurvey",
        {
            "object_id": [str(i) for i in range(n)],
            "image": [
                {
                    "band": ["g", "r", "z"],
                    "flux": flux[i],
                    "mask": np.zeros(flux.shape[1:], bool),
                    "ivar": np.ones(flux.shape[1:], np.float32),
                    "psf_fwhm": [1.2, 1.1, 1.0],
                    "scale": [0.262] * 3,
                }
                for i in range(n)
            ],
            "rgb": rgb,
            "ra": rng.uniform(0, 360, n).tolist(),
            "dec": rng.uniform(-30, 30, n).tolist(),
        },
        datasets.Features(
            {
                "object_id": datasets.Value("string"),
                "image": {
                    "band": datasets.Sequence(datasets.Value("string")),
                    "flux": datasets.Array3D(shape=flux.shape[1:], dtype="float32"),
                    "mask": datasets.Array3D(shape=flux.shape[1:], dtype="bool"),
                    "ivar": datasets.Array3D(shape=flux.shape[1:], dtype="float32"),
                    "psf_fwhm": datasets.Sequence(datasets.Value("float32")),
                    "scale": datasets.Sequence(datasets.Value("float32")),
                },
                "rgb": datasets.Image(),
                "ra": datasets.Value("float64"),
                "dec": datasets.Value("float64"),
            }
        ),
    )
    lam = np.linspace(3600, 9800, 500).astype(np.float32)
    write(
        "desi",
        {
            "object_id": [str(i) for i in range(n)],
            "spectrum": [
                {
                    "flux": (1 + 0.1 * rng.normal(size=lam.size)).astype(np.float32),
                    "ivar": np.ones(lam.size, np.float32),
                    "lsf_sigma": np.full(lam.size, 0.8, np.float32),
                    "lambda": lam,
                    "mask": np.zeros(lam.size, bool),
                }
                for _ in range(n)
            ],
            "ra": rng.uniform(0, 360, n).tolist(),
            "dec": rng.uniform(-30, 30, n).tolist(),
        },
        datasets.Features(
            {
                "object_id": datasets.Value("string"),
                "spectrum": {
                    k: datasets.Sequence(datasets.Value("bool" if k == "mask" else "float32"))
                    for k in ("flux", "ivar", "lsf_sigma", "lambda", "mask")
                },
                "ra": datasets.Value("float64"),
                "dec": datasets.Value("float64"),
            }
        ),
    )
    lcs = []
    for _ in range(n):
        t = np.concatenate([np.sort(rng.uniform(59580, 59800, 40)), np.zeros(20)]).astype(np.float32)
        lcs.append(
            {
                "band": rng.choice(list("ugrizY"), 60).tolist(),
                "time": t,
                "flux": rng.normal(50, 5, 60).astype(np.float32),
                "flux_err": np.full(60, 5.0, np.float32),
            }
        )
    write(
        "plasticc",
        {
            "object_id": [str(i) for i in range(n)],
            "lightcurve": lcs,
            "obj_type": rng.choice(["SNIa", "SNII", "RRL", "AGN"], n).tolist(),
            "redshift": rng.uniform(0, 1, n).astype(np.float32).tolist(),
        },
        datasets.Features(
            {
                "object_id": datasets.Value("string"),
                "lightcurve": {
                    "band": datasets.Sequence(datasets.Value("string")),
                    "time": datasets.Sequence(datasets.Value("float32")),
                    "flux": datasets.Sequence(datasets.Value("float32")),
                    "flux_err": datasets.Sequence(datasets.Value("float32")),
                },
                "obj_type": datasets.Value("string"),
                "redshift": datasets.Value("float32"),
            }
        ),
    )
    return root


def _write_hats(frame, dest: str | Path, ra: str, dec: str, partition_rows: int = 60) -> Path:
    """Write a (nested) frame as a HATS catalog with LSDB, several partitions so streams have chunks."""
    import shutil

    import lsdb

    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    lsdb.from_dataframe(frame, ra_column=ra, dec_column=dec, partition_rows=partition_rows).write_catalog(
        dest
    )
    return dest


def _nested_lightcurves(base, lengths, columns, rng):
    import nested_pandas as npd
    import pandas as pd

    rows = np.repeat(np.arange(len(base)), lengths)
    flat = pd.DataFrame({name: make(rows.size) for name, make in columns.items()}, index=rows)
    return npd.NestedFrame(base).join_nested(flat, "lightcurve")


def tess(dest: str | Path, n: int = 300, seed: int = 0) -> Path:
    """LSDB's tess_lightcurve in miniature: ticid, ra_obj, dec_obj and a nested lightcurve (time,
    sap_flux with 5% NaN, sap_flux_err, cadenceno), objects around (180, 0) so the published cone search
    (1 degree there) finds some; 60-300 points each, so a 100-point filter keeps most."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    base = pd.DataFrame(
        {
            "ticid": np.arange(35000000, 35000000 + n, dtype=np.int64),
            "ra_obj": 180 + rng.uniform(-3, 3, n),
            "dec_obj": rng.uniform(-3, 3, n),
        }
    )
    lengths = rng.integers(60, 300, n)

    def flux(k):
        values = rng.normal(1000, 30, k).astype(np.float32)
        values[rng.random(k) < 0.05] = np.nan
        return values

    frame = _nested_lightcurves(
        base,
        lengths,
        {
            "time": lambda k: np.sort(rng.uniform(2000, 2030, k)),
            "sap_flux": flux,
            "sap_flux_err": lambda k: np.full(k, 30, np.float32),
            "cadenceno": lambda k: np.arange(k, dtype=np.int32),
        },
        rng,
    )
    return _write_hats(frame, dest, "ra_obj", "dec_obj")


def ztf_lc(dest: str | Path, n: int = 200, seed: int = 1) -> Path:
    """IRSA's ZTF DR24 light-curve HATS catalog in miniature: objectid, objra, objdec, lightcurve_flags
    and a nested lightcurve (hmjd, mag with NaN, magerr)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    base = pd.DataFrame(
        {
            "objectid": np.arange(n, dtype=np.int64) + 10**15,
            "objra": rng.uniform(0, 360, n),
            "objdec": rng.uniform(-30, 60, n),
            "lightcurve_flags": rng.choice([0, 0, 0, 1], n),
        }
    )
    lengths = rng.integers(50, 250, n)

    def mag(k):
        values = rng.normal(18, 0.3, k).astype(np.float32)
        values[rng.random(k) < 0.05] = np.nan
        return values

    frame = _nested_lightcurves(
        base,
        lengths,
        {
            "hmjd": lambda k: np.sort(rng.uniform(58200, 60000, k)),
            "mag": mag,
            "magerr": lambda k: np.full(k, 0.05, np.float32),
        },
        rng,
    )
    return _write_hats(frame, dest, "objra", "objdec")


def gaia(dest: str | Path, n: int = 3000, seed: int = 2) -> Path:
    """LSDB's gaia_dr3 in miniature (ra, dec, phot_g_mean_mag), uniform on the sphere."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "source_id": np.arange(n, dtype=np.int64),
            "ra": rng.uniform(0, 360, n),
            "dec": np.degrees(np.arcsin(rng.uniform(-1, 1, n))),
            "phot_g_mean_mag": rng.uniform(8, 21, n),
        }
    )
    return _write_hats(frame, dest, "ra", "dec", partition_rows=500)


def hats_points(dest: str | Path, n: int = 500, seed: int = 3) -> Path:
    """A HATS catalog of points: object_id, ra, dec (and the same as coord_ra, coord_dec), mag."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    ra, dec = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    frame = pd.DataFrame(
        {
            "object_id": np.arange(1000, 1000 + n, dtype=np.int64),
            "ra": ra,
            "dec": dec,
            "coord_ra": ra,
            "coord_dec": dec,
            "mag": rng.uniform(15, 22, n),
        }
    )
    return _write_hats(frame, dest, "ra", "dec", partition_rows=100)


def cnn_weights(out: str | Path, seed: int = 0) -> Path:
    """A HyraxCNN weights file for 3x32x32 CIFAR images, 10 classes, as the published Hyrax writes one
    (torch.save of the module's state_dict: conv1, conv2, fc1, fc2, fc3 of the PyTorch CIFAR tutorial)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    shapes = {
        "conv1.weight": (6, 3, 5, 5),
        "conv1.bias": (6,),
        "conv2.weight": (16, 6, 5, 5),
        "conv2.bias": (16,),
        "fc1.weight": (120, 400),
        "fc1.bias": (120,),
        "fc2.weight": (84, 120),
        "fc2.bias": (84,),
        "fc3.weight": (10, 84),
        "fc3.bias": (10,),
    }
    state = {k: torch.randn(*v, generator=generator) * 0.1 for k, v in shapes.items()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    return out


def sl(dest: str | Path, n: int = 40, seed: int = 4) -> Path:
    """The strong-lensing challenge folder the slchallenge notebook reads: 5 band files per object
    (<kind>_<id>_<band>.fits, "_L_" for lenses, data[0][1] the 41x41 image) and parameters.fits with
    masked "Lens ID" / "Object ID" columns."""
    from astropy.io import fits
    from astropy.table import MaskedColumn, Table

    rng = np.random.default_rng(seed)
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    lens_ids, object_ids = [], []
    for i in range(n):
        lens = i % 2 == 0
        for b, band in enumerate("GRIZY"):
            cube = rng.normal(0, 1, (1, 2, 41, 41)).astype(np.float32)
            # Upper-case names sort before parameters.fits, as the challenge's do.
            fits.PrimaryHDU(cube).writeto(
                folder / f"HSC_{'L' if lens else 'N'}_{i:05d}_{b}{band}.fits", overwrite=True
            )
        lens_ids.append(i if lens else 0)
        object_ids.append(0 if lens else i)
    # Files sort as HSC_L_* then HSC_N_*: list the parameters in the same order.
    order = [i for i in range(n) if i % 2 == 0] + [i for i in range(n) if i % 2 == 1]
    Table(
        {
            "Lens ID": MaskedColumn([lens_ids[i] for i in order], mask=[i % 2 == 1 for i in order]),
            "Object ID": MaskedColumn([object_ids[i] for i in order], mask=[i % 2 == 0 for i in order]),
        }
    ).write(folder / "parameters.fits", overwrite=True)
    return folder


def results(dest: str | Path, n: int = 2000) -> Path:
    """A results directory as the implementation under test writes it (lance_db/results.lance inside):
    the loopback model trained one epoch and inferred on the random dataset, then a UMAP of it; DEST becomes a copy of
    the UMAP run directory."""
    import shutil
    import tempfile

    from hyrax import Hyrax

    work = Path(tempfile.mkdtemp())
    h = Hyrax()
    h.set_config("general.results_dir", str(work))
    h.set_config("model.name", "HyraxLoopback")
    h.set_config("data_set.HyraxRandomDataset.size", n)
    h.set_config("data_set.HyraxRandomDataset.shape", [2, 4, 4])
    h.set_config("train.epochs", 1)
    group = {
        "data": {
            "dataset_class": "HyraxRandomDataset",
            "data_location": str(work / "random"),
            "primary_id_field": "object_id",
        }
    }
    h.config["data_request"] = {"train": group, "infer": group}
    h.train()
    h.infer()
    h.umap()
    umap_dir = max(
        (p for p in work.iterdir() if p.is_dir() and "umap" in p.name), key=lambda p: p.stat().st_mtime
    )
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(umap_dir, dest)
    return dest


KINDS = {
    "cifar": cifar,
    "hsc": hsc,
    "plasticc": plasticc,
    "mmu": mmu,
    "tess": tess,
    "gaia": gaia,
    "ztf_lc": ztf_lc,
    "hats_points": hats_points,
    "cnn_weights": cnn_weights,
    "sl": sl,
    "results": results,
}

if __name__ == "__main__":
    kind, dest = sys.argv[1], sys.argv[2]
    print(KINDS[kind](dest))

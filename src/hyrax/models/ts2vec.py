"""``HyraxTs2Vec``: TS2Vec (Yue et al. 2022), a self-supervised encoder of light curves.

Each light curve becomes an event sequence, one timestep per observation in time order, with the
channels flux (or magnitude) and its error on the object's own scale, ``log1p`` of the gap to the
previous observation, and a one-hot band; padding is NaN. A stack of dilated residual convolutions
encodes every timestep; training contrasts two overlapping random crops of each curve, with random
timesteps masked, by a hierarchical loss (the same timestep in the two crops against other objects and
other timesteps, at every scale of a max-pool pyramid). ``infer`` writes one vector of ``output_dims``
per object: the maximum over its observed timesteps.

``[model.HyraxTs2Vec]``: ``output_dims``, ``hidden_dims``, ``depth``, ``mask_mode``, ``temporal_unit``,
``alpha``, ``learning_rate`` (its own AdamW; ``[optimizer]`` is not used), ``encoding_window``, and the
input encoding: ``time_field``, ``flux_field``, ``flux_err_field``, ``band_field`` (false: one band),
``bands``, ``max_sequence_length``, ``normalize``. The fields are found in the batch under the names
given, as ``<column>_<subfield>`` (the published flattened spelling) or ``<column>.<subfield>`` of a
nested light-curve column (``lc``); left at their published (LSST) defaults and absent, the light curve's
columns are found by their common spellings (time/mjd, mag/flux, magerr/flux_err, band/filter).

>>> batch = {"object_id": np.array(["a"]), "data": {"lc": {
...     "mjd": np.array([[3.0, 1.0, 2.0, 0.0]]), "mag": np.array([[15.0, 16.0, 17.0, 0.0]]),
...     "magerr": np.array([[0.1, 0.1, 0.1, 0.0]]),
...     "mjd_mask": np.array([[True, True, True, False]])}}}
>>> settings = InputSettings.from_config(_published_defaults() | {"max_sequence_length": 5})
>>> series = encode_light_curves(batch, settings)
>>> series.shape, series[0, :3, 0].tolist(), bool(np.isnan(series[0, 3:]).all())
((1, 5, 3), [0.0, 1.0, -1.0], True)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from hyrax.errors import ConfigError
from hyrax.models.model import ModelContractError, hyrax_model

logger = logging.getLogger(__name__)

_POOLING_SAID = False


def _say_pooling_once() -> None:
    """The vectors differ from the published HyraxTs2Vec's (which also pools over the padding): said once
    per process, at run time, as every deliberate difference that changes a user's numbers is."""
    global _POOLING_SAID
    if not _POOLING_SAID:
        _POOLING_SAID = True
        logger.warning(
            "HyraxTs2Vec: each object's vector is the maximum over its observed timesteps only; the "
            "published Hyrax 0.13 also pools over the padding up to max_sequence_length, so its vectors "
            "differ from these (ours do not change with max_sequence_length). See docs/migration.md."
        )


MASK_MODES = ("binomial", "continuous", "all_true", "all_false", "mask_last")
ENCODING_WINDOWS = ("full_series", "multiscale")
NORMALIZE_MODES = ("median_mad", "zscore")
#: Channels before the one-hot band block: flux, flux error, log1p(time gap).
LEADING_CHANNELS = 3
WHERE = "model.HyraxTs2Vec"


# -- the input encoding --------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputSettings:
    """The ``[model.HyraxTs2Vec]`` keys that describe the input, checked once."""

    time_field: str = "lightcurve_midpointMjdTai"
    flux_field: str = "lightcurve_psfFlux"
    flux_err_field: str = "lightcurve_psfFluxErr"
    band_field: str | None = "lightcurve_band"
    bands: tuple[str, ...] = ("u", "g", "r", "i", "z", "y")
    max_sequence_length: int = 256
    normalize: str | None = "median_mad"

    @classmethod
    def from_config(cls, settings: Mapping[str, Any]) -> InputSettings:
        length = settings["max_sequence_length"]
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ConfigError(f"{WHERE}.max_sequence_length must be a whole number >= 1; got {length!r}.")
        normalize = settings["normalize"]
        if normalize is not False and normalize not in NORMALIZE_MODES:
            raise ConfigError(
                f'{WHERE}.normalize must be "median_mad", "zscore" or false (raw values); got {normalize!r}.'
            )
        band = settings["band_field"]
        bands = tuple(str(b) for b in (settings["bands"] or ()))
        if band is not False and not bands:
            raise ConfigError(
                f"{WHERE}.bands is empty: list the bands (their one-hot order), or set band_field = false for "
                f"light curves of one band."
            )
        return cls(
            time_field=str(settings["time_field"]),
            flux_field=str(settings["flux_field"]),
            flux_err_field=str(settings["flux_err_field"]),
            band_field=None if band is False else str(band),
            bands=bands if band is not False else (),
            max_sequence_length=int(length),
            normalize=None if normalize is False else str(normalize),
        )

    @property
    def channels(self) -> int:
        return LEADING_CHANNELS + len(self.bands)


def _published_defaults() -> dict[str, Any]:
    """The input keys at their published defaults (those of :class:`InputSettings`)."""
    defaults = asdict(InputSettings())
    defaults["band_field"] = defaults["band_field"] or False
    defaults["normalize"] = defaults["normalize"] or False
    return defaults


#: The settings of the run in progress: set from the config by :meth:`HyraxTs2Vec.configure_inputs`
#: before Hyrax prepares a batch (``prepare_inputs`` takes the batch only). A plain dict, so that the
#: ``prepare_inputs.py`` saved with the weights holds the values it was trained with.
INPUT_SETTINGS: dict[str, Any] = _published_defaults()


def settings_in_use(pinned: Mapping[str, Any]) -> dict[str, Any]:
    """The input keys ``prepare_inputs`` uses: those of ``[model.HyraxTs2Vec]`` in the run context's config
    (``get_context()["config"]``, as the published model reads them; a loaded model's: the config it was
    trained with), else ``pinned`` (set by :meth:`HyraxTs2Vec.configure_inputs`, or saved with the weights)."""
    from hyrax.context import get_context

    config = get_context().get("config")
    table = config.get("model", {}).get("HyraxTs2Vec") if isinstance(config, Mapping) else None
    if not isinstance(table, Mapping):
        return dict(pinned)
    return {key: table.get(key, value) for key, value in pinned.items()}


#: Which columns were found for which keys, said once a process.
_ANNOUNCED: set[tuple] = set()


def _lookup(group: Mapping, name: str) -> tuple[np.ndarray, np.ndarray | None] | None:
    """``(values, mask)`` of ``name`` in one dataset's batch: a field of that name, ``<column>.<subfield>``
    (a nested column's field, or a subfield of a dict field), or the published ``<column>_<subfield>``."""
    if name in group and not isinstance(group[name], Mapping):
        return np.asarray(group[name]), group.get(f"{name}_mask")
    spellings = [name.split(".", 1)] if "." in name else []
    spellings += [
        [name[:i], name[i + 1 :]] for i, char in enumerate(name) if char == "_" and 0 < i < len(name) - 1
    ]
    for column, subfield in spellings:
        dotted = f"{column}.{subfield}"
        if dotted in group and not isinstance(group[dotted], Mapping):
            return np.asarray(group[dotted]), group.get(f"{dotted}_mask")
        nested = group.get(column)
        if isinstance(nested, Mapping) and subfield in nested:
            return np.asarray(nested[subfield]), nested.get(f"{subfield}_mask")
    return None


def _field_names(group: Mapping) -> list[str]:
    names = []
    for key, value in group.items():
        if isinstance(value, Mapping):
            names += [f"{key}.{child}" for child in value if not str(child).endswith("_mask")]
        elif not str(key).endswith("_mask"):
            names.append(str(key))
    return names


def _detected(group: Mapping, settings: InputSettings) -> dict[str, str] | None:
    """The light curve's columns by their common spellings, for keys left at their published defaults:
    ``{key: field}`` from the first nested column (or group of ``<column>.<subfield>`` fields) that has
    a time and a value column, or None."""
    from hyrax.datasets.lightcurves import BAND_NAMES, ERROR_NAMES, TIME_NAMES, VALUE_NAMES, _choose

    columns: dict[str, list[str]] = {}
    for name in _field_names(group):
        if "." in name:
            column, child = name.split(".", 1)
            columns.setdefault(column, []).append(child)
    for column, children in columns.items():
        time, value = _choose(children, TIME_NAMES), _choose(children, VALUE_NAMES)
        if time is None or value is None:
            continue
        error = _choose(children, [f"{value.lower()}err", f"{value.lower()}_err", *ERROR_NAMES])
        band = _choose(children, BAND_NAMES)
        found = {"time_field": time, "flux_field": value, "flux_err_field": error, "band_field": band}
        return {key: f"{column}.{child}" for key, child in found.items() if child is not None}
    return None


def _columns(batch: Mapping, settings: InputSettings) -> tuple[dict[str, np.ndarray | None], np.ndarray]:
    """The time, flux, flux error and band arrays ``(batch, length)`` and which entries are observations."""
    groups = [(name, value) for name, value in batch.items() if isinstance(value, Mapping)]
    groups.sort(key=lambda item: item[0] != "data")  # the published group name first
    wanted = {
        "time_field": settings.time_field,
        "flux_field": settings.flux_field,
        "flux_err_field": settings.flux_err_field,
    }
    if settings.band_field is not None:
        wanted["band_field"] = settings.band_field
    defaults = _published_defaults()
    for name, group in groups:
        found = {key: _lookup(group, field) for key, field in wanted.items()}
        if found["time_field"] is None:
            continue
        absent = [key for key, value in found.items() if value is None]
        if absent:
            _absent_error(name, group, {key: wanted[key] for key in absent})
        return _arrays(found, name, wanted)
    for name, group in groups:  # keys at their published (LSST) defaults: the columns by their spellings
        detected = _detected(group, settings)
        chosen = {key: wanted[key] for key in wanted if wanted[key] != defaults[key]}
        if detected is None or any(_lookup(group, field) is None for field in chosen.values()):
            continue
        fields = {**{k: v for k, v in detected.items() if k in wanted or k == "band_field"}, **chosen}
        if settings.band_field is not None and "band_field" not in fields:
            fields.pop("band_field", None)  # one band: no band column
        announce = (name, tuple(sorted(fields.items())))
        if announce not in _ANNOUNCED:
            _ANNOUNCED.add(announce)
            logger.info(
                "HyraxTs2Vec takes %s from '%s' (the [%s] field names are at their published LSST defaults, "
                "which this batch does not have; set them to choose).",
                ", ".join(f"{key} = {field}" for key, field in fields.items()),
                name,
                WHERE,
            )
        found = {key: _lookup(group, field) for key, field in fields.items()}
        found.setdefault("band_field", None)
        return _arrays(found, name, fields)
    listed = "; ".join(f"{name}: {', '.join(_field_names(group)) or '(none)'}" for name, group in groups)
    raise ModelContractError(
        f"HyraxTs2Vec found no '{settings.time_field}' (model.HyraxTs2Vec.time_field) in the batch; its fields: "
        f"{listed or '(none)'}. Set [model.HyraxTs2Vec] time_field, flux_field, flux_err_field and band_field "
        f"to the light curve's columns, as '<column>_<subfield>' or '<column>.<subfield>' (e.g. time_field = "
        f'"lc_mjd"), band_field = false for one band, and request the light-curve column in `fields`.'
    )


def _absent_error(name: str, group: Mapping, absent: Mapping[str, str]) -> None:
    from hyrax.plugins import did_you_mean

    names = _field_names(group)
    parts = [f"{key} = '{field}'{did_you_mean(field, names).rstrip('?')}" for key, field in absent.items()]
    raise ModelContractError(
        f"HyraxTs2Vec: '{name}' has no field for {WHERE}.{'; '.join(parts)}. Its fields: {', '.join(names)}. "
        f"Set those keys to fields it has (band_field = false for light curves of one band)."
    )


def _arrays(found, name, fields):
    values = {key: (None if item is None else item[0]) for key, item in found.items()}
    time_mask = found["time_field"][1]
    shapes = {v.shape for v in values.values() if v is not None}
    if len(shapes) > 1 or len(next(iter(shapes))) != 2:
        raise ModelContractError(
            f"HyraxTs2Vec: the light-curve fields of '{name}' ({', '.join(fields.values())}) must be padded "
            f"arrays of one shape (objects x observations), from one light-curve column; got "
            f"{', '.join(str(s) for s in shapes)}."
        )
    observed = np.ones(values["time_field"].shape, bool) if time_mask is None else np.asarray(time_mask, bool)
    for key in ("time_field", "flux_field", "flux_err_field"):
        with np.errstate(invalid="ignore"):
            observed &= np.isfinite(values[key].astype(np.float64))
    return values, observed


def _band_codes(bands: np.ndarray, observed: np.ndarray, settings: InputSettings) -> np.ndarray:
    """Each observation's position in ``settings.bands`` (-1: another band, warned once)."""
    if bands.dtype.kind in "iu":
        codes = np.where((bands >= 0) & (bands < len(settings.bands)), bands, -1).astype(np.int64)
    else:
        names = np.char.strip(bands.astype(str))
        distinct, inverse = np.unique(names, return_inverse=True)
        index = {band: i for i, band in enumerate(settings.bands)}
        codes = np.array([index.get(str(b), -1) for b in distinct], dtype=np.int64)[
            inverse.reshape(names.shape)
        ]
    other = sorted({str(b) for b in np.unique(bands[observed & (codes < 0)])})
    if other and ("bands", *other) not in _ANNOUNCED:
        _ANNOUNCED.add(("bands", *other))
        logger.warning(
            "HyraxTs2Vec: observations in band(s) %s, not in %s.bands %s, get no band channel; add them there.",
            ", ".join(other),
            WHERE,
            list(settings.bands),
        )
    return codes


def encode_light_curves(batch: Mapping, settings: InputSettings) -> np.ndarray:
    """The event sequences of a batch: float32 ``(objects, max_sequence_length, 3 + len(bands))``, the
    earliest ``max_sequence_length`` observations of each object in time order (see the module
    documentation); NaN where there is no observation."""
    values, observed = _columns(batch, settings)
    time = values["time_field"].astype(np.float64)
    codes = None
    if settings.bands and values.get("band_field") is not None:
        codes = _band_codes(np.asarray(values["band_field"]), observed, settings)
    order = np.argsort(np.where(observed, time, np.inf), axis=1, kind="stable")
    length = settings.max_sequence_length

    def fit(array, fill):
        array = np.take_along_axis(array, order, axis=1)[:, :length]
        width = length - array.shape[1]
        return np.pad(array, ((0, 0), (0, width)), constant_values=fill) if width > 0 else array

    observed = fit(observed, False)
    time, flux = fit(time, 0.0), fit(values["flux_field"].astype(np.float64), 0.0)
    error = fit(values["flux_err_field"].astype(np.float64), 0.0)
    flux, error = _normalized(flux, error, observed, settings.normalize)
    gaps = np.zeros_like(time)
    gaps[:, 1:] = np.where(observed[:, :-1] & observed[:, 1:], np.diff(time, axis=1), 0.0)
    series = np.zeros((*time.shape, settings.channels), dtype=np.float32)
    series[..., 0], series[..., 1] = flux, error
    series[..., 2] = np.log1p(np.clip(gaps, 0.0, None))
    if codes is not None:
        codes = fit(codes, -1)
        rows, steps = np.nonzero(observed & (codes >= 0))
        series[rows, steps, LEADING_CHANNELS + codes[rows, steps]] = 1.0
    series[~observed] = np.nan
    return series


def _normalized(flux, error, observed, mode):
    """Each object's values minus its centre, over its spread (errors over the same spread): the median
    and 1.4826 x the median absolute deviation (``median_mad``, the standard deviation where that is 0),
    or the mean and standard deviation (``zscore``)."""
    if mode is None:
        return flux, error
    values = np.where(observed, flux, np.nan)
    values[~observed.any(axis=1)] = 0.0  # an object without observations: no all-NaN slices
    if mode == "median_mad":
        centre = np.nanmedian(values, axis=1, keepdims=True)
        spread = 1.4826 * np.nanmedian(np.abs(values - centre), axis=1, keepdims=True)
        spread = np.where(spread > 0, spread, np.nanstd(values, axis=1, keepdims=True))
    else:
        centre = np.nanmean(values, axis=1, keepdims=True)
        spread = np.nanstd(values, axis=1, keepdims=True)
    spread = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
    centre = np.where(np.isfinite(centre), centre, 0.0)
    return (flux - centre) / spread, error / spread


# -- the network ---------------------------------------------------------------------------------------
class DilatedBlock(nn.Module):
    """Two convolutions (kernel 3, one dilation, the length kept) after GELUs, plus the input: a 1x1
    convolution of it where the width changes (and in the last block)."""

    def __init__(self, width_in: int, width_out: int, dilation: int, last: bool = False):
        super().__init__()
        self.first = nn.Conv1d(width_in, width_out, 3, padding=dilation, dilation=dilation)
        self.second = nn.Conv1d(width_out, width_out, 3, padding=dilation, dilation=dilation)
        self.skip = nn.Conv1d(width_in, width_out, 1) if (last or width_in != width_out) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(F.gelu(self.first(F.gelu(x)))) + self.skip(x)


def timestep_mask(mode: str, count: int, length: int, device) -> torch.Tensor:
    """Which timesteps the encoder sees, ``(count, length)`` bool: ``binomial`` (each kept with
    probability 1/2), ``continuous`` (5 spans of 10% hidden), ``all_true``, ``all_false``, ``mask_last``."""
    if mode == "binomial":
        return torch.rand(count, length, device=device) < 0.5
    keep = torch.ones(count, length, dtype=torch.bool, device=device)
    if mode == "continuous":
        span = max(int(0.1 * length), 1)
        for _ in range(max(min(5, length // 2), 1)):
            starts = torch.randint(0, length - span + 1, (count, 1), device=device)
            steps = torch.arange(length, device=device)
            keep &= ~((steps >= starts) & (steps < starts + span))
    elif mode == "all_false":
        keep[:] = False
    elif mode == "mask_last":
        keep[:, -1] = False
    return keep


class TimeSeriesEncoder(nn.Module):
    """``(objects, time, channels)`` with NaN at missing timesteps -> ``(objects, time, output_dims)``."""

    def __init__(self, channels: int, output_dims: int, hidden_dims: int, depth: int, mask_mode: str):
        super().__init__()
        self.mask_mode = mask_mode
        self.project = nn.Linear(channels, hidden_dims)
        widths = [hidden_dims] * depth + [output_dims]
        self.blocks = nn.Sequential(
            *(
                DilatedBlock(hidden_dims if i == 0 else widths[i - 1], width, 2**i, last=i == depth)
                for i, width in enumerate(widths)
            )
        )
        self.dropout = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor, mask: str | None = None) -> torch.Tensor:
        observed = ~torch.isnan(x).any(dim=-1)
        hidden = self.project(torch.where(observed.unsqueeze(-1), x, torch.zeros_like(x)))
        # Timesteps hidden by the mask (training only: the augmentation) and missing ones carry nothing.
        mode = mask or (self.mask_mode if self.training else "all_true")
        if mode != "all_true":
            observed = observed & timestep_mask(mode, x.shape[0], x.shape[1], x.device)
        hidden = torch.where(observed.unsqueeze(-1), hidden, torch.zeros_like(hidden))
        return self.dropout(self.blocks(hidden.transpose(1, 2))).transpose(1, 2)


# -- the loss ------------------------------------------------------------------------------------------
def _contrast(z: torch.Tensor, count: int) -> torch.Tensor:
    """Cross entropy of picking each of the ``2 * count`` rows' partner (``i`` <-> ``count + i``) among
    the other rows, by dot product, averaged over the leading axis. ``z``: (..., 2 * count, dims)."""
    similarity = z @ z.transpose(-1, -2)
    eye = torch.eye(2 * count, dtype=torch.bool, device=z.device)
    similarity = similarity.masked_fill(eye, float("-inf"))
    partner = torch.cat([torch.arange(count, 2 * count), torch.arange(count)]).to(z.device)
    log_p = F.log_softmax(similarity, dim=-1)
    return -log_p[..., torch.arange(2 * count, device=z.device), partner].mean()


class HierarchicalContrastiveLoss(nn.Module):
    """TS2Vec's loss on two encodings ``(objects, time, dims)`` of the same timesteps: at each level of a
    max-pool pyramid (halving time), ``alpha`` x the instance contrast (each object against the others at
    the same timestep) + ``1 - alpha`` x the temporal contrast (each timestep against the object's other
    timesteps, from level ``temporal_unit`` up), averaged over the levels."""

    def __init__(self, alpha: float = 0.5, temporal_unit: int = 0):
        super().__init__()
        self.alpha, self.temporal_unit = float(alpha), int(temporal_unit)

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        alpha, total, levels = self.alpha, first.new_zeros(()), 0
        while True:
            if alpha != 0 and first.shape[0] > 1:
                total = total + alpha * _contrast(torch.cat([first, second]).transpose(0, 1), first.shape[0])
            if levels >= self.temporal_unit and alpha != 1 and first.shape[1] > 1:
                total = total + (1 - alpha) * _contrast(torch.cat([first, second], dim=1), first.shape[1])
            levels += 1
            if first.shape[1] <= 1:
                return total / levels
            first = F.max_pool1d(first.transpose(1, 2), 2).transpose(1, 2)
            second = F.max_pool1d(second.transpose(1, 2), 2).transpose(1, 2)


def _window(x: torch.Tensor, starts: np.ndarray, length: int) -> torch.Tensor:
    """``length`` timesteps of each object from its own start (starts may be negative or run past the end:
    those timesteps are missing, NaN)."""
    padded = F.pad(x.transpose(1, 2), (length, length), value=float("nan")).transpose(1, 2)
    steps = torch.as_tensor(starts, device=x.device)[:, None] + length + torch.arange(length, device=x.device)
    return padded[torch.arange(x.shape[0], device=x.device)[:, None], steps]


# -- the model -----------------------------------------------------------------------------------------
@hyrax_model
class HyraxTs2Vec(nn.Module):
    """TS2Vec on light curves (see the module documentation); ``infer`` writes ``output_dims`` per object."""

    def __init__(self, config, data_sample=None):
        super().__init__()
        settings = config["model"]["HyraxTs2Vec"]
        if data_sample is None or np.ndim(data_sample) != 3:
            raise ModelContractError(
                "HyraxTs2Vec is sized by one prepared sample, (1, time, channels) (HyraxTs2Vec.prepare_inputs of a "
                f"batch of one); got {None if data_sample is None else np.shape(data_sample)}."
            )
        self.mask_mode = str(settings["mask_mode"])
        self.encoding_window = str(settings["encoding_window"])
        for key, value, allowed in (
            ("mask_mode", self.mask_mode, MASK_MODES),
            ("encoding_window", self.encoding_window, ENCODING_WINDOWS),
        ):
            if value not in allowed:
                raise ConfigError(f"{WHERE}.{key} must be one of {', '.join(allowed)}; got {value!r}.")
        self.temporal_unit, self.alpha = int(settings["temporal_unit"]), float(settings["alpha"])
        self.encoder = TimeSeriesEncoder(
            channels=int(np.shape(data_sample)[-1]),
            output_dims=int(settings["output_dims"]),
            hidden_dims=int(settings["hidden_dims"]),
            depth=int(settings["depth"]),
            mask_mode=self.mask_mode,
        )
        # TS2Vec is specified with AdamW: the model's own, so [optimizer] (SGD or Adam) is not used.
        self.optimizer = torch.optim.AdamW(self.parameters(), lr=float(settings["learning_rate"]))
        self.criterion = HierarchicalContrastiveLoss(self.alpha, self.temporal_unit)  # not [criterion]

    @classmethod
    def configure_inputs(cls, config: Mapping) -> None:
        """Take the input keys of ``[model.HyraxTs2Vec]`` for the batches prepared from now on outside a run
        context (Hyrax calls it with the run's config before the first ``prepare_inputs``; inside a run,
        ``prepare_inputs`` reads the same keys from ``get_context()["config"]``)."""
        chosen = {key: config["model"]["HyraxTs2Vec"][key] for key in _published_defaults()}
        InputSettings.from_config(chosen)  # checked now, before any data is read
        INPUT_SETTINGS.clear()
        INPUT_SETTINGS.update(chosen)

    @staticmethod
    def prepare_inputs(batch):
        return encode_light_curves(batch, InputSettings.from_config(settings_in_use(INPUT_SETTINGS)))

    def forward(self, x: torch.Tensor, mask: str | None = None) -> torch.Tensor:
        """Per-timestep representations ``(objects, time, output_dims)``."""
        return self.encoder(x, mask)

    def _loss(self, x: torch.Tensor) -> torch.Tensor | None:
        x = x[~torch.isnan(x).flatten(1).all(dim=1)]  # objects without observations teach nothing
        if len(x) == 0:
            return None
        length, shortest = x.shape[1], 2 ** (self.temporal_unit + 1)
        if length < shortest:
            raise ConfigError(
                f"HyraxTs2Vec: sequences of {length} timesteps are shorter than 2**(temporal_unit + 1) = "
                f"{shortest}: raise {WHERE}.max_sequence_length or lower {WHERE}.temporal_unit."
            )
        # Two crops sharing a window of `overlap` timesteps, each with its own context around it; the
        # loss compares the two encodings of the shared window. One random shift per object.
        overlap = np.random.randint(shortest, length + 1)
        left = np.random.randint(length - overlap + 1)
        outer_left = np.random.randint(left + 1)
        outer_right = np.random.randint(left + overlap, length + 1)
        shift = np.random.randint(-outer_left, length - outer_right + 1, size=len(x))
        first = self(_window(x, shift + outer_left, left + overlap - outer_left))[:, -overlap:]
        second = self(_window(x, shift + left, outer_right - left))[:, :overlap]
        return self.criterion(first, second)

    def train_batch(self, x: torch.Tensor) -> dict:
        loss = self._loss(x)
        if loss is None:
            return {"loss": 0.0}
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def validate_batch(self, x: torch.Tensor) -> dict:
        with torch.no_grad():
            loss = self._loss(x)
        return {"loss": 0.0 if loss is None else loss.item()}

    def test_batch(self, x: torch.Tensor) -> dict:
        return self.validate_batch(x)

    def infer_batch(self, x: torch.Tensor) -> torch.Tensor:
        """``full_series``: ``(objects, output_dims)``, the maximum over each object's observed timesteps
        (0 for an object without any); ``multiscale``: ``(objects, time, output_dims x levels)``."""
        _say_pooling_once()
        out = self(x)
        observed = ~torch.isnan(x).any(dim=-1, keepdim=True)
        out = out.masked_fill(~observed, float("-inf"))
        if self.encoding_window == "full_series":
            pooled = out.amax(dim=1)
            return torch.where(torch.isfinite(pooled), pooled, torch.zeros_like(pooled))
        scales, level = [], 0
        while 2**level + 1 < out.shape[1]:
            window = 2 ** (level + 1) + 1
            pooled = F.max_pool1d(out.transpose(1, 2), window, stride=1, padding=2**level).transpose(1, 2)
            scales.append(torch.where(torch.isfinite(pooled), pooled, torch.zeros_like(pooled)))
            level += 1
        return torch.cat(scales, dim=-1)

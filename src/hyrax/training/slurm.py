"""Processes started by Slurm's ``srun``: torch.distributed's variables taken from Slurm's.

``srun`` starts every task of a job step itself (one per GPU, say), with no torchrun in between, and
tells each which it is through ``SLURM_PROCID`` (rank), ``SLURM_NTASKS`` (world size), ``SLURM_LOCALID``
(rank on its node) and ``SLURM_JOB_NODELIST`` (the hosts, in Slurm's bracket syntax). torch.distributed
reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``: :func:`apply` sets
those that are missing, with the first host of the node list as the master (the rank 0 task runs there)
and ``MASTER_PORT`` as given or derived from the job id, so that every task of a job agrees on it.
Under torchrun (or with ``RANK`` set by hand) nothing is changed.

>>> env = {"SLURM_PROCID": "3", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "81234",
...        "SLURM_JOB_NODELIST": "gpu[07-08,11]"}
>>> sorted(torch_variables(env).items())  # doctest: +NORMALIZE_WHITESPACE
[('LOCAL_RANK', '1'), ('MASTER_ADDR', 'gpu07'), ('MASTER_PORT', '16234'), ('RANK', '3'),
 ('WORLD_SIZE', '8')]
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, MutableMapping

from hyrax.errors import ConfigError

#: Ports 15000-24999, from the job id's last four digits (as Ignite derives them), unless MASTER_PORT says.
BASE_PORT = 15000

_TORCH_SET = ("RANK", "TORCHELASTIC_RUN_ID")  # a launcher (or the user) already said which process this is


def expand_nodelist(nodelist: str) -> list[str]:
    """Slurm's host list syntax, expanded as ``scontrol show hostnames`` does.

    >>> expand_nodelist("cn[001-003,010],gpu5,rack[1-2]-ib")
    ['cn001', 'cn002', 'cn003', 'cn010', 'gpu5', 'rack1-ib', 'rack2-ib']
    """
    hosts: list[str] = []
    # Commas inside brackets separate ranges, outside them hosts.
    for item in re.findall(r"(?:[^,\[]|\[[^\]]*\])+", nodelist):
        expanded = [""]
        for text, ranges in re.findall(r"([^\[]*)(?:\[([^\]]*)\])?", item):
            choices = [text]
            if ranges:
                choices = [text + value for part in ranges.split(",") for value in _range(part, nodelist)]
            expanded = [prefix + choice for prefix in expanded for choice in choices]
        hosts += [host for host in expanded if host]
    return hosts


def _range(part: str, nodelist: str) -> list[str]:
    first, _, last = part.partition("-")
    if not first.isdigit() or (last and not last.isdigit()):
        raise ConfigError(f"SLURM_JOB_NODELIST={nodelist!r}: cannot read the range {part!r} of host numbers.")
    if not last:
        return [first]
    return [str(number).zfill(len(first)) for number in range(int(first), int(last) + 1)]


def torch_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The torch.distributed variables of a task ``srun`` started; {} when torchrun (or the user) set
    ``RANK`` already, or when Slurm did not start several tasks."""
    if any(name in environ for name in _TORCH_SET) or "SLURM_PROCID" not in environ:
        return {}
    if int(environ.get("SLURM_NTASKS", "1")) <= 1:
        return {}
    master = environ.get("MASTER_ADDR")
    if not master:
        nodelist = environ.get("SLURM_JOB_NODELIST") or environ.get("SLURM_NODELIST")
        if not nodelist:
            raise ConfigError(
                "Started by srun with several tasks, but neither MASTER_ADDR nor SLURM_JOB_NODELIST is set: "
                "export MASTER_ADDR (the host of task 0) in the batch script."
            )
        master = expand_nodelist(nodelist)[0]
    port = environ.get("MASTER_PORT")
    if not port:
        job = environ.get("SLURM_JOB_ID", "")
        if not job.isdigit():
            raise ConfigError(
                "Started by srun with several tasks, but neither MASTER_PORT nor a numeric SLURM_JOB_ID is set: "
                "export MASTER_PORT (a free port on the first node) in the batch script."
            )
        port = str(BASE_PORT + int(job[-4:]))
    return {
        "RANK": environ["SLURM_PROCID"],
        "WORLD_SIZE": environ["SLURM_NTASKS"],
        "LOCAL_RANK": environ.get("SLURM_LOCALID", "0"),
        "MASTER_ADDR": master,
        "MASTER_PORT": port,
    }


def apply(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set :func:`torch_variables` in ``environ`` (this process's environment by default); what was set."""
    environ = os.environ if environ is None else environ
    variables = torch_variables(environ)
    environ.update(variables)
    return variables

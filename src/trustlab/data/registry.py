"""The dataset registry: one name -> one loader, plus how to tell if it is available."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from trustlab.data.container import Dataset
from trustlab.errors import TrustlabError


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    loader: Callable[..., Dataset]
    locate: Callable[[Path | None], str | None]  # where the bytes are, or None if absent
    description: str
    rows: int | None
    groups: tuple[str, ...]
    kind: str  # "tabular" or "image"
    where_to_put: str  # shown when the data is missing


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    DATASETS[spec.name] = spec
    return spec


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise TrustlabError(
            f"unknown dataset {name!r}; choose one of: {', '.join(sorted(DATASETS))}"
        )
    return DATASETS[name]


def load_dataset(name: str, *, data_dir: str | Path | None = None, seed: int = 0,
                 **params: Any) -> Dataset:
    """Load a registered dataset by name.

    ``data_dir`` (or the ``TRUSTLAB_DATA`` environment variable) is where local copies
    live; ``seed`` fixes seeded splits; other keyword arguments are the loader's own
    options (e.g. ``colored_mnist``'s ``label_noise``). Unknown options are an error.
    """
    spec = get_spec(name)
    check_options(spec, params)
    return spec.loader(data_dir=resolve_data_dir(data_dir), seed=seed, **params)


def check_options(spec: DatasetSpec, options: dict[str, Any]) -> None:
    """Unknown loader options are an error naming the first one (checked before loading,
    so an experiment file is validated without reading any data)."""
    accepted = sorted(set(inspect.signature(spec.loader).parameters) - {"data_dir", "seed"})
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TrustlabError(f"dataset {spec.name!r} has no option {unknown[0]!r}; options: "
                            f"{', '.join(accepted) or 'none'}")


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    import os

    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("TRUSTLAB_DATA")
    return Path(env).expanduser() if env else None


def dataset_table(data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """What `trustlab datasets` prints: name, rows, groups, available?, source."""
    ddir = resolve_data_dir(data_dir)
    out = []
    for name in sorted(DATASETS):
        spec = DATASETS[name]
        where = spec.locate(ddir)
        out.append({
            "name": name,
            "kind": spec.kind,
            "rows": spec.rows,
            "groups": list(spec.groups),
            "available": where is not None,
            "source": where if where is not None else spec.where_to_put,
            "description": spec.description,
        })
    return out

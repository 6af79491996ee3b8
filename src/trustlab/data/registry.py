"""The dataset registry: one name -> one loader, plus how to tell if it is available.

A dataset's options are its loader's keyword arguments (other than ``data_dir`` and
``seed``): the loader's signature is their one declaration, and :attr:`DatasetSpec.Params`
is the pydantic model derived from it (what configs validate against and ``trustlab list
datasets`` shows).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from pydantic import ConfigDict, create_model

from trustlab.data.container import Dataset
from trustlab.errors import TrustlabError
from trustlab.registry import ParamError, Params, Registry, check_params

RUNTIME_ARGUMENTS = ("data_dir", "seed")  # given by the caller, not options


class LoaderOptions(Params):
    """A loader's options. Strict types: the loader receives the values as written, so a
    ``"0.3"`` where a number is expected is refused rather than passed on."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)


def loader_options(loader: Callable[..., Dataset], name: str) -> type[LoaderOptions]:
    """The options model of ``loader``: its keyword arguments, types and defaults."""
    fields: dict[str, Any] = {}
    for param in inspect.signature(loader, eval_str=True).parameters.values():
        if param.name in RUNTIME_ARGUMENTS or param.kind in (param.VAR_POSITIONAL,
                                                            param.VAR_KEYWORD):
            continue
        annotation = Any if param.annotation is param.empty else param.annotation
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, default)
    return create_model(f"{name}_options", __base__=LoaderOptions, **fields)


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: its loader and what ``trustlab datasets`` shows about it."""

    name: str
    loader: Callable[..., Dataset]
    locate: Callable[[Path | None], str | None]  # where the bytes are, or None if absent
    description: str
    rows: int | None
    groups: tuple[str, ...]
    kind: str  # "tabular" or "image"
    where_to_put: str  # shown when the data is missing
    # Checks the bytes found (e.g. against published checksums): None when they are right,
    # else what is wrong ("checksum mismatch"). None: nothing to check.
    verify: Callable[[Path | None], str | None] | None = None

    @cached_property
    def Params(self) -> type[LoaderOptions]:  # noqa: N802 - the registry's entry protocol
        """The loader's options (derived once from its signature)."""
        return loader_options(self.loader, self.name)

    def __getstate__(self) -> dict[str, Any]:
        # The derived model is rebuilt on first use, not pickled (a created class has no
        # importable name).
        return {k: v for k, v in self.__dict__.items() if k != "Params"}


DATASETS = Registry("datasets", "dataset")


def register_dataset(spec: DatasetSpec, *, builtin: bool = False) -> DatasetSpec:
    """Add ``spec`` to :data:`DATASETS` (``builtin``: trustlab's own, registered when
    :mod:`trustlab.data` is imported)."""
    return DATASETS.register(spec, builtin=builtin)


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise TrustlabError(
            f"unknown dataset {name!r}; choose one of: {', '.join(sorted(DATASETS))}"
        )
    return DATASETS.get(name)


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
    """Loader ``options`` checked against ``spec.Params`` before loading (so an experiment
    file is validated without reading any data): a :class:`~trustlab.registry.ParamError`
    on key ``options.<option>`` for an unknown option or a value of the wrong type."""
    try:
        check_params(spec.Params, options, owner=f"dataset {spec.name!r}")
    except ParamError as exc:
        raise exc.under("options") from None


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    import os

    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("TRUSTLAB_DATA")
    return Path(env).expanduser() if env else None


def dataset_table(data_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """What `trustlab datasets` prints: name, rows, groups, available?, source. ``status``
    says why a dataset whose files are present is not available (``present, checksum
    mismatch``)."""
    ddir = resolve_data_dir(data_dir)
    out = []
    for name in sorted(DATASETS):
        spec = DATASETS[name]
        where = spec.locate(ddir)
        problem = spec.verify(ddir) if where is not None and spec.verify else None
        status = "no" if where is None else (f"present, {problem}" if problem else "yes")
        out.append({
            "name": name,
            "kind": spec.kind,
            "rows": spec.rows,
            "groups": list(spec.groups),
            "available": where is not None and problem is None,
            "status": status,
            "source": where if where is not None else spec.where_to_put,
            "description": spec.description,
        })
    return out

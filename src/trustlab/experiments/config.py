"""Experiment files: YAML -> typed config -> the list of trials.

An experiment file has a few keys the engine owns (``name``, ``kind``, ``seeds``, ``grid``,
``executor``, ``report``); every other key belongs to the trial kind, whose pydantic model
validates it (so an unknown key is an error that names it). ``grid:`` maps dotted keys to
lists and expands into their cartesian product; a list of such mappings is the union of
their products (as scikit-learn's ``ParameterGrid``), so a study can sweep one axis only
where it matters; ``seeds:`` repeats every grid point.
A trial is one resolved kind config plus one seed; its id is a hash of both.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from trustlab.errors import TrustlabError

ENGINE_KEYS = ("name", "kind", "seeds", "grid", "executor", "report")


class StrictModel(BaseModel):
    """Unknown keys are errors; ``1`` is not silently accepted where a string is expected."""

    model_config = ConfigDict(extra="forbid", strict=False)


class SlurmConfig(StrictModel):
    """Arguments of :class:`dask_jobqueue.SLURMCluster`; ``options`` passes anything else."""

    jobs: int = Field(1, ge=1, description="how many Slurm jobs to start (cluster.scale)")
    cores: int = Field(1, ge=1)
    processes: int = Field(1, ge=1)
    memory: str = "4GB"
    walltime: str = "01:00:00"
    queue: str | None = None
    account: str | None = None
    job_extra_directives: list[str] = Field(default_factory=list)
    watchdog: float = Field(3600.0, gt=0, description="seconds with no worker at all (jobs "
                                                      "gone or queued) before the sweep "
                                                      "ends with one line")
    options: dict[str, Any] = Field(default_factory=dict)


class ExecutorConfig(StrictModel):
    slurm: SlurmConfig | None = None


class ReportConfig(StrictModel):
    """What the report's accuracy-vs-fairness scatter plots (None: the kind's default)."""

    x_metric: str | None = None
    y_metric: str = "accuracy"
    absolute_x: bool = True


class EngineConfig(StrictModel):
    name: str
    kind: str = "tabular"
    seeds: list[int] = Field(default_factory=lambda: [0])
    grid: dict[str, list[Any]] | list[dict[str, list[Any]]] = Field(default_factory=dict)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    @field_validator("name")
    @classmethod
    def _name_is_a_directory_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError("must be letters, digits, '_', '-' or '.' (it names the "
                             "output directory)")
        return v

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds_are_not_booleans(cls, v: Any) -> Any:
        # pydantic's lax mode reads `true` as 1; a boolean is a typo, not a seed
        if isinstance(v, list) and any(isinstance(s, bool) for s in v):
            raise ValueError("must be integers (got a boolean)")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds_nonempty_unique(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("needs at least one seed")
        if len(set(v)) != len(v):
            raise ValueError("has duplicates")
        bad = [s for s in v if not 0 <= s < 2**32]
        if bad:  # numpy and scikit-learn accept seeds in [0, 2**32) only
            raise ValueError(f"must be between 0 and 2**32 - 1 (got {bad[0]})")
        return v

    @property
    def subgrids(self) -> list[dict[str, list[Any]]]:
        """The grid as a list of mappings (one for a plain mapping); each expands into its
        cartesian product and the trials are the union."""
        return self.grid if isinstance(self.grid, list) else [self.grid]

    @property
    def grid_keys(self) -> list[str]:
        """Every swept key, in order of first appearance."""
        return list(dict.fromkeys(k for sub in self.subgrids for k in sub))


def _subgrids(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The raw ``grid:`` as a list of mappings (created empty when absent)."""
    grid = raw.setdefault("grid", {})
    subs = grid if isinstance(grid, list) else [grid]
    if not all(isinstance(sub, dict) for sub in subs):
        raise TrustlabError("grid: must be a mapping of dotted keys to lists, or a list "
                            "of such mappings")
    return subs


# -- YAML -------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """PyYAML implements YAML 1.1, where ``1e-3`` is a string; read it as YAML 1.2 does
    (a float), since learning rates and C values are written that way. Hand-written: the
    usual resolver override, PyYAML has no switch for it.

    A key written twice in one mapping is an error (PyYAML keeps the last one silently,
    so a second ``dataset:`` block would quietly replace the first)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` may be overridden by the keys after it
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # an unhashable key: PyYAML's own error says so below
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {first + 1})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+][0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TrustlabError(f"{where}: invalid YAML{line}: {problem}") from None


# -- dotted keys ----------------------------------------------------------------------------
def set_dotted(tree: dict[str, Any], key: str, value: Any, where: str) -> None:
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise TrustlabError(f"{where}: bad key {key!r}")
    node = tree
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise TrustlabError(f"{where}: cannot set {key!r}: "
                                f"{'.'.join(parts[:i + 1])!r} is not a mapping")
        node = nxt
    node[parts[-1]] = value


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"name": "x"}}`` -> ``{"model.name": "x"}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def parse_override(item: str) -> tuple[str, Any]:
    """``--set KEY=VALUE``; VALUE is YAML (``[0, 1]``, ``true``, ``1e-3``, ``compas``)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not p for p in key.split(".")):
        raise TrustlabError(f"bad --set {item!r}: expected KEY=VALUE with a dotted KEY")
    return key, parse_yaml(raw, f"--set {key}") if raw.strip() else ""


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Hydra-style overrides. ``grid.<dotted key>`` sets one grid axis (in every part of a
    list of grids); overriding a key that is also a grid axis pins it (the axis is
    dropped)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, value = parse_override(item)
        if key.startswith("grid."):
            for sub in _subgrids(raw):
                sub[key[len("grid."):]] = value
            continue
        if isinstance(raw.get("grid"), (dict, list)):
            for sub in _subgrids(raw):
                sub.pop(key, None)
                # A key inside a gridded block would be overwritten by every grid value.
                axis = next((a for a in sub if key.startswith(f"{a}.")), None)
                if axis is not None:
                    raise TrustlabError(f"--set {item}: {axis!r} is a grid axis whose "
                                        f"values replace {key!r}; set the axis "
                                        f"(grid.{axis}=[...]) or pin it ({axis}=...)")
        set_dotted(raw, key, value, f"--set {item}")
    return raw


# -- validation -------------------------------------------------------------------------------
def _describe(exc: ValidationError, prefix: str = "") -> str:
    """The first pydantic error as one line naming the dotted key."""
    from trustlab.registry import describe_validation_error

    return describe_validation_error(exc, prefix)


@dataclass(frozen=True)
class Trial:
    trial_id: str
    seed: int
    config: dict[str, Any]   # the kind's resolved config (plain JSON types, defaults filled)
    point: dict[str, Any]    # this trial's grid assignment (dotted key -> value)
    ordinal: int             # position in the sweep, for stable display order

    @property
    def params(self) -> dict[str, Any]:
        """Dotted keys of the full resolved config, plus ``seed`` (what the store keeps)."""
        return {**flatten(self.config), "seed": self.seed}


def trial_id(kind: str, config: dict[str, Any], seed: int) -> str:
    """A stable id: sha256 of canonical JSON of (kind, resolved config, seed)."""
    blob = json.dumps({"kind": kind, "config": config, "seed": seed}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Experiment:
    engine: EngineConfig
    raw: dict[str, Any]              # the experiment after --set overrides (as YAML saw it)
    source_text: str                 # the YAML file as written
    overrides: list[str]
    trials: list[Trial] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def kind(self) -> str:
        return self.engine.kind

    @property
    def grid_keys(self) -> list[str]:
        return self.engine.grid_keys


def build_experiment(raw: Any, *, where: str = "experiment", source_text: str = "",
                     overrides: list[str] | None = None) -> Experiment:
    """Validate ``raw`` (a parsed YAML mapping) and expand it into trials.

    Everything is checked here, before anything runs or is written: engine keys, the
    kind's keys for every grid point, and the kind's own name checks (model, dataset...).
    """
    from trustlab.experiments.kinds import get_kind

    overrides = list(overrides or [])
    if not isinstance(raw, dict):
        raise TrustlabError(f"{where}: the experiment must be a YAML mapping of keys")
    raw = apply_overrides(raw, overrides)
    engine_raw = {k: raw[k] for k in ENGINE_KEYS if k in raw}
    kind_raw = {k: v for k, v in raw.items() if k not in ENGINE_KEYS}
    grid_raw = engine_raw.get("grid")
    if isinstance(grid_raw, list) and not grid_raw:
        raise TrustlabError(f"{where}: grid: empty list (nothing to sweep)")
    try:
        subs = _subgrids({"grid": grid_raw}) if grid_raw is not None else []
    except TrustlabError as exc:
        raise TrustlabError(f"{where}: {exc}") from None
    for sub in subs:
        for key, values in sub.items():
            if not isinstance(values, list):
                raise TrustlabError(f"{where}: grid.{key}: must be a list of values")
            if not values:
                raise TrustlabError(f"{where}: grid.{key}: empty list (nothing to sweep)")
    try:
        engine = EngineConfig.model_validate(engine_raw)
    except ValidationError as exc:
        raise TrustlabError(f"{where}: {_describe(exc)}") from None

    try:
        kind = get_kind(engine.kind)
    except TrustlabError as exc:
        raise TrustlabError(f"{where}: kind: {exc}") from None
    for key in engine.grid_keys:
        head = key.split(".")[0]
        if head == "seed" or head in ENGINE_KEYS:
            hint = " (use seeds: to repeat trials)" if head in ("seed", "seeds") else ""
            raise TrustlabError(f"{where}: grid.{key}: cannot sweep an engine key{hint}")

    exp = Experiment(engine=engine, raw=raw, source_text=source_text, overrides=overrides)
    points = [dict(zip(sub, combo)) for sub in engine.subgrids
              for combo in itertools.product(*sub.values())]
    seen: dict[str, Trial] = {}
    for point in points:
        tree = copy.deepcopy(kind_raw)
        label = ", ".join(f"{k}={v}" for k, v in point.items())
        at = f"{where}: " + (f"[grid point {label}] " if label else "")
        for key, value in point.items():
            set_dotted(tree, key, copy.deepcopy(value), at.rstrip(": ") or where)
        try:
            model = kind.config_model.model_validate(tree)
        except ValidationError as exc:
            raise TrustlabError(f"{at}{_describe(exc)}") from None
        if kind.validate is not None:
            try:
                kind.validate(model)
            except TrustlabError as exc:
                raise TrustlabError(f"{at}{exc}") from None
        resolved = model.model_dump(mode="json")
        for seed in engine.seeds:
            tid = trial_id(engine.kind, resolved, seed)
            if tid in seen:  # two grid points that resolve to the same config
                continue
            seen[tid] = Trial(tid, seed, resolved, point, len(seen))
    exp.trials = list(seen.values())
    return exp


def load_experiment(path: str | Path, overrides: list[str] | None = None) -> Experiment:
    """Read, override, validate and expand an experiment file."""
    path = Path(path)
    if not path.is_file():
        raise TrustlabError(f"experiment file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TrustlabError(f"{path.name}: not a UTF-8 text file (byte {exc.start}); "
                            "an experiment file is YAML text") from None
    except OSError as exc:
        raise TrustlabError(f"cannot read {path}: {exc.strerror or exc}") from None
    raw = parse_yaml(text, path.name)
    return build_experiment(raw, where=path.name, source_text=text, overrides=overrides)

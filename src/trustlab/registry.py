"""Registries — one per pipeline stage — and how their entries declare parameters.

Every piece a YAML file can name is an *entry* in its stage's :class:`Registry`: datasets,
tabular models, networks, mitigations, deep training methods, backdoor attacks (triggers),
defenses, poisoning optimizers and trial kinds. An entry is a class (or an object) with

* ``name`` — what a YAML file writes;
* ``Params`` — a pydantic model that declares its parameters **once**: names, types,
  defaults, constraints and one-line descriptions (in the spirit of scikit-learn's
  ``_parameter_constraints``). Configs validate against it (errors name the dotted key),
  the entry's constructor checks against it, ``trustlab list`` prints it;
* a docstring whose first line says what it is.

Adding a method, a defense, an optimizer or a mitigation is one class plus one line in its
stage's registry. Built-in entries are registered as lazy ``"module:attribute"`` strings
so that listing the mitigations does not import torch. Third-party packages add entries
through entry points in the group ``trustlab.<stage>`` (e.g. ``trustlab.defenses``);
code adds them with :meth:`Registry.register`. A YAML file can only name registered
entries: it never imports a module of its choice. ``TRUSTLAB_PLUGINS`` (comma-separated
module names, like pytest's ``PYTEST_PLUGINS``) imports plugin modules that register
entries through the Python API; it is read from the environment, never from a YAML file.
"""

from __future__ import annotations

import importlib
import os
import types
import typing
import warnings
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticUndefined, to_jsonable_python

from trustlab.errors import TrustlabError

# stage -> where its registry object lives (imported on first use).
STAGES: dict[str, str] = {
    "datasets": "trustlab.data.registry:DATASETS",
    "models": "trustlab.training.tabular_models:MODELS",
    "networks": "trustlab.training.deep.models:NETWORKS",
    "mitigations": "trustlab.mitigations:MITIGATIONS",
    "methods": "trustlab.training.deep.methods:METHODS",
    "attacks": "trustlab.attacks.backdoor.triggers:TRIGGERS",
    "defenses": "trustlab.defenses:DEFENSES",
    "optimizers": "trustlab.attacks.fairness_poisoning.optimizers:OPTIMIZERS",
    "kinds": "trustlab.experiments.kinds:KINDS",
}
PLUGINS_ENV = "TRUSTLAB_PLUGINS"


# -- parameter declarations ----------------------------------------------------------------
class ParamError(TrustlabError, ValueError):
    """A bad parameter. ``key`` is its dotted path below the config block that holds it.

    A ``ValueError`` so that pydantic, when a config block's validator raises it, reports
    it at that block's location (see :func:`describe_validation_error`); a
    ``TrustlabError`` so that the Python API and the CLI show it as one line.
    """

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message

    def under(self, block: str) -> "ParamError":
        """The same error with ``block`` prepended to its key (``options.x`` checked inside
        the ``dataset`` block becomes ``dataset.options.x``)."""
        return ParamError(".".join(k for k in (block, self.key) if k), self.message)


def _admits_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any:
        return True
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is Literal:
        return any(isinstance(a, bool) for a in args)
    if typing.get_origin(annotation) is typing.Annotated:
        return _admits_bool(args[0])
    return any(_admits_bool(a) for a in args) if typing.get_origin(annotation) in (
        typing.Union, types.UnionType) else False


class Params(BaseModel):
    """Base of every entry's parameter declaration: unknown keys are errors, and a YAML
    ``true`` is not silently read as ``1`` where a number is expected."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                for key in (name, field.alias):
                    if isinstance(data.get(key), bool) and not _admits_bool(field.annotation):
                        raise ParamError(key, f"expected a number, got {data[key]!r}")
        return data

    def to_dict(self) -> dict[str, Any]:
        """Plain values under their YAML names (``lambda``, not ``lambda_``)."""
        return self.model_dump(by_alias=True)


class OpenParams(Params):
    """Declared parameters plus pass-through ones (e.g. any scikit-learn estimator
    argument); the entry checks the extra names itself."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


def describe_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """The first pydantic error as one line naming the dotted key (``prefix`` + location)."""
    errors = exc.errors()
    err = errors[0]
    type_tags = {"int", "float", "str", "bool", "none", "list", "dict", "tuple", "set"}

    def field_path(e) -> tuple[list[str], list[str]]:
        # Union members show up in the location as type tags (`subsample.int`): split them.
        fields, tags = [], []
        for p in e["loc"]:
            p = str(p)
            if p.startswith("function-") or p in type_tags or "[" in p:
                tags.append(p.split("[")[0])
            else:
                fields.append(p)
        return fields, tags

    fields, _ = field_path(err)
    inner = (err.get("ctx") or {}).get("error")
    if isinstance(inner, ParamError):  # raised by a block's validator: extend the location
        fields = fields + [k for k in inner.key.split(".") if k]
        loc = ".".join(fields)
        loc = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "config"
        return f"{loc}: {inner.message}"
    loc = ".".join(fields)
    loc = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "config"
    if err["type"] == "extra_forbidden":
        return f"unknown key {loc!r}"
    if err["type"] == "missing":
        return f"missing key {loc!r}"
    union = [field_path(e)[1] for e in errors if field_path(e)[0] == fields]
    msg = err["msg"]
    if len(union) > 1 and all(union):
        msg = "expected " + " or ".join(dict.fromkeys(t[-1] for t in union))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    got = err.get("input")
    shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
    return f"{loc}: {msg}{shown}"


def _model_at(model: type[BaseModel], path: list[str]) -> type[BaseModel]:
    """The nested declaration at ``path`` (``["nc"]`` -> NeuralCleanse.Params)."""
    for part in path:
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        ann = field.annotation if field is not None else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return model
        model = ann
    return model


def check_params(params_model: type[Params], values: dict[str, Any] | None,
                 owner: str = "") -> Params:
    """``values`` validated by ``params_model``; a :class:`ParamError` names the bad key."""
    if values is not None and not isinstance(values, dict):
        raise ParamError("", f"parameters must be a mapping, got {values!r}")
    try:
        return params_model.model_validate(values or {})
    except ValidationError as exc:
        line = describe_validation_error(exc)
        key, _, message = line.partition(": ")
        if line.startswith("unknown key ") or line.startswith("missing key "):
            what, key = line.split(" key ", 1)
            key, message = key.strip("'"), f"{what} key"
            if what == "unknown":
                known = sorted(f.alias or n for n, f in
                               _model_at(params_model, key.split(".")[:-1]).model_fields.items())
                message = ("unknown parameter; parameters: "
                           f"{', '.join(known) if known else 'none'}")
        if key == "config":
            key = ""
        raise ParamError(key, f"{message}{f' ({owner})' if owner else ''}") from None


class Configurable:
    """Mixin for entries built from their ``Params``: ``self.params`` is the validated
    declaration, and each parameter is also an attribute (``self.steps``)."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = Params

    def _set_params(self, values: dict[str, Any]) -> None:
        params = check_params(type(self).Params, values, owner=type(self).name)
        self.params = params
        for field in type(params).model_fields:
            setattr(self, field, getattr(params, field))
        for key, value in (params.model_extra or {}).items():
            setattr(self, key, value)


# -- the registry --------------------------------------------------------------------------
_INSTANCES: dict[str, Registry] = {}
_PLUGINS_IMPORTED = False


def _import_spec(spec: str, what: str, plugin: bool = False) -> Any:
    """Import ``"module:attribute"``. A broken third-party plugin is one line; an error in
    trustlab's own modules keeps its traceback (it is a bug)."""
    module, _, attr = spec.partition(":")
    errors = Exception if plugin else (ImportError, AttributeError)
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except errors as exc:
        raise TrustlabError(f"{what}: cannot load {spec!r} ({type(exc).__name__}: {exc})"
                            ) from None
    return obj


def import_env_plugins() -> None:
    """Import the modules named in ``$TRUSTLAB_PLUGINS`` once per process."""
    global _PLUGINS_IMPORTED
    if _PLUGINS_IMPORTED:
        return
    _PLUGINS_IMPORTED = True
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(","))):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise TrustlabError(f"{PLUGINS_ENV}: cannot import {module!r} ({exc})") from None


class Registry:
    """Name -> entry for one pipeline stage (see the module docstring).

    ``builtin`` maps names to ``"module:attribute"`` strings loaded on first use;
    ``noun`` is how messages call an entry ("defense", "training method").
    """

    def __init__(self, stage: str, noun: str, builtin: dict[str, str] | None = None):
        self.stage = stage
        self.noun = noun
        self._lazy: dict[str, str] = dict(builtin or {})
        self._builtin = set(self._lazy)
        self._entries: dict[str, Any] = {}
        self._runtime: dict[str, Any] = {}  # added by code in this process (see registrations)
        self._entry_points_read = False
        _INSTANCES[stage] = self

    @property
    def group(self) -> str:
        """The entry-point group third-party packages register under."""
        return f"trustlab.{self.stage}"

    # registration
    def register(self, entry: Any = None, *, name: str | None = None, builtin: bool = False):
        """Add ``entry`` (usable as a class decorator). Its ``name`` attribute is the key
        unless ``name`` is given; a name already taken is an error. ``builtin``: trustlab's
        own entries registered at import (datasets), which workers know without being told."""
        def add(obj: Any) -> Any:
            key = name or getattr(obj, "name", None)
            if not key:
                raise TypeError(f"{self.noun} entry {obj!r} has no name")
            self._check_entry(key, obj)
            current = self._entries.get(key)
            if (key in self._lazy or current is not None) and current is not obj:
                raise TrustlabError(f"{self.noun} {key!r} is already registered")
            self._entries[key] = obj
            if builtin:
                self._builtin.add(key)
            elif key not in self._builtin:
                self._runtime[key] = obj
            return obj

        return add if entry is None else add(entry)

    def unregister(self, name: str) -> None:
        """Remove an entry added at run time (tests use it to clean up)."""
        if name in self._builtin:
            raise TrustlabError(f"{self.noun} {name!r} is built in")
        self._entries.pop(name, None)
        self._runtime.pop(name, None)
        self._lazy.pop(name, None)

    def _check_entry(self, key: str, obj: Any) -> None:
        params = getattr(obj, "Params", None)
        if not (isinstance(params, type) and issubclass(params, BaseModel)):
            raise TypeError(f"{self.noun} {key!r} must declare its parameters as a pydantic "
                            "model `Params` (subclass trustlab.registry.Params)")

    def _read_entry_points(self) -> None:
        if self._entry_points_read:
            return
        self._entry_points_read = True
        import_env_plugins()
        from importlib.metadata import entry_points

        for ep in entry_points(group=self.group):
            if ep.name in self._lazy or ep.name in self._entries:
                warnings.warn(f"entry point {ep.value!r} ({self.group}) ignored: "
                              f"{self.noun} {ep.name!r} already exists", stacklevel=2)
                continue
            self._lazy[ep.name] = ep.value

    # lookup
    def names(self) -> list[str]:
        self._read_entry_points()
        return list(dict.fromkeys([*self._lazy, *self._entries]))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self):
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def get(self, name: str) -> Any:
        """The entry called ``name``; a :class:`TrustlabError` lists the choices."""
        self._read_entry_points()
        if name in self._entries:
            return self._entries[name]
        if not isinstance(name, str) or name not in self._lazy:
            raise TrustlabError(f"unknown {self.noun} {name!r}; choose one of: "
                                f"{', '.join(self.names())}")
        obj = _import_spec(self._lazy[name], f"{self.noun} {name!r}",
                           plugin=name not in self._builtin)
        self._check_entry(name, obj)
        self._entries[name] = obj
        return obj

    __getitem__ = get

    def items(self) -> list[tuple[str, Any]]:
        return [(n, self.get(n)) for n in self.names()]

    def params(self, name: str) -> type[Params]:
        return self.get(name).Params

    def resolve(self, name: str, values: dict[str, Any] | None, *, key: str = "params",
                name_key: str = "name") -> dict[str, Any]:
        """``values`` checked against entry ``name``'s declaration, defaults filled in.

        Errors are :class:`ParamError` whose key is relative to the config block:
        ``name_key`` for an unknown entry, ``key.<param>`` for a bad parameter.
        """
        try:
            entry = self.get(name)
        except TrustlabError as exc:
            raise ParamError(name_key, str(exc)) from None
        try:
            return check_params(entry.Params, values, owner=f"{self.noun} {name!r}").to_dict()
        except ParamError as exc:
            raise ParamError(".".join(k for k in (key, exc.key) if k), exc.message) from None

    def describe(self) -> list[dict[str, Any]]:
        """Each entry with its description and declared parameters (``trustlab list``)."""
        return [describe_entry(n, self.get(n)) for n in self.names()]

    def runtime_entries(self) -> dict[str, Any]:
        return dict(self._runtime)


def get_registry(stage: str) -> Registry:
    if stage not in STAGES:
        raise TrustlabError(f"unknown registry {stage!r}; choose one of: {', '.join(STAGES)}")
    if stage not in _INSTANCES:
        obj = _import_spec(STAGES[stage], f"registry {stage!r}")
        if not isinstance(obj, Registry) or obj.stage != stage:
            raise TypeError(f"{STAGES[stage]} is not the {stage!r} Registry")
    return _INSTANCES[stage]


def registrations() -> dict[str, dict[str, Any]]:
    """Entries registered by code in this process, per stage. The runner sends them with
    each trial so that worker processes (spawned, or on a Dask cluster) know them too;
    they travel as pickled references, so their module must be importable there."""
    return {stage: reg.runtime_entries() for stage, reg in _INSTANCES.items()
            if reg.runtime_entries()}


def restore_registrations(entries: dict[str, dict[str, Any]]) -> None:
    """Register in this (worker) process what :func:`registrations` sent."""
    for stage, named in (entries or {}).items():
        reg = get_registry(stage)
        for name, entry in named.items():
            if name not in reg._entries:
                reg.register(entry, name=name)


# -- describing entries (trustlab list) -----------------------------------------------------
def _type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if annotation is type(None):
        return "null"
    if origin in (list, tuple, set):
        return "list"
    if origin is dict or annotation is dict:
        return "mapping"
    if annotation is Any:
        return "any"
    return getattr(annotation, "__name__", str(annotation))


_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _constraints(field) -> str:
    parts = []
    for meta in field.metadata:
        for attr, sym in _BOUNDS.items():
            value = getattr(meta, attr, None)
            if value is not None:
                parts.append(f"{sym} {value:g}" if isinstance(value, float) else f"{sym} {value}")
    return ", ".join(parts)


def _default(field) -> Any:
    if field.is_required():
        return PydanticUndefined
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        value = value.model_dump(by_alias=True)
    return to_jsonable_python(value)


def describe_params(model: type[BaseModel], prefix: str = "", depth: int = 2,
                    defaults: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One record per declared parameter (nested declarations flattened to dotted keys).
    ``defaults`` overrides the declared defaults (a nested block whose default is an
    instance with other values, e.g. a network block defaulting to ``small_cnn``)."""
    out = []
    for name, field in model.model_fields.items():
        yaml_name = field.alias or name
        key = prefix + yaml_name
        ann = field.annotation
        nested = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        default = _default(field)
        if defaults is not None and yaml_name in defaults:
            default = to_jsonable_python(defaults[yaml_name])
        if nested is not None and depth > 1:
            inner = default if isinstance(default, dict) else None
            out.extend(describe_params(nested, key + ".", depth - 1, inner))
            continue
        out.append({"name": key, "type": _type_name(ann),
                    "required": default is PydanticUndefined,
                    "default": None if default is PydanticUndefined else default,
                    "constraints": _constraints(field),
                    "description": field.description or ""})
    return out


def summary_line(obj: Any) -> str:
    text = getattr(obj, "description", None)
    if not isinstance(text, str) or not text:
        text = (getattr(obj, "__doc__", None) or "").strip()
    return " ".join(text.split("\n\n")[0].split())


def describe_entry(name: str, entry: Any) -> dict[str, Any]:
    params = entry.Params
    extra = getattr(entry, "extra_params", None)
    if extra is None and params.model_config.get("extra") == "allow":
        extra = "other parameters pass through"
    return {"name": name, "description": summary_line(entry),
            "params": describe_params(params), "extra_params": extra}


__all__ = ["Configurable", "OpenParams", "ParamError", "Params", "Registry", "STAGES",
           "check_params", "describe_entry", "describe_params", "describe_validation_error",
           "get_registry", "import_env_plugins", "registrations", "restore_registrations"]

"""Every stage's registry: entries declare their parameters once, `trustlab list` shows
exactly those declarations, and entries reach a sweep through the Python API or through
entry points — never through an import a YAML file asks for."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap

import pytest
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from trustlab.errors import TrustlabError
from trustlab.registry import STAGES, Params, Registry, get_registry

CLI = [sys.executable, "-c", "from trustlab.cli import entry; entry()"]
# Blocks whose fields are sub-configs (a kind's `dataset:`) or loader options taken from a
# loader's signature: described by their own entries or the loader's docstring.
NO_FIELD_DOCS = {"kinds", "datasets"}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def listing() -> dict:
    out = run_cli("list", "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def declared_default(model: type[BaseModel], dotted: str):
    """The default of ``dotted`` read from the declaration itself: a nested field's own
    default, unless its parent block's default (an instance) sets it otherwise."""
    parent_value = None
    for part in dotted.split("."):
        name, field = next((n, f) for n, f in model.model_fields.items()
                           if part in (n, f.alias))
        own = None if field.is_required() else field.get_default(call_default_factory=True)
        if isinstance(parent_value, BaseModel):
            own = getattr(parent_value, name)
        parent_value = own
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            model = field.annotation
    if isinstance(parent_value, BaseModel):
        parent_value = parent_value.model_dump(by_alias=True)
    return to_jsonable_python(parent_value)


@pytest.mark.parametrize("stage", list(STAGES))
def test_every_entry_declares_its_parameters_and_list_shows_them(stage, listing):
    registry = get_registry(stage)
    assert isinstance(registry, Registry) and len(registry) > 0
    shown = {e["name"]: e for e in listing[stage]}
    assert set(shown) == set(registry.names())
    for name, entry in registry.items():
        # a kind's declaration is its whole config file (a StrictConfig)
        assert issubclass(entry.Params, BaseModel if stage == "kinds" else Params), name
        assert shown[name]["description"], f"{stage} {name!r} has no one-line description"
        fields = entry.Params.model_fields
        listed = {p["name"]: p for p in shown[name]["params"]}
        # every declared parameter is listed (nested blocks as dotted keys), nothing else
        assert {k.split(".")[0] for k in listed} == {f.alias or n for n, f in fields.items()}
        for key, p in listed.items():
            if p["required"]:
                continue
            assert p["default"] == declared_default(entry.Params, key), (stage, name, key)
        if stage not in NO_FIELD_DOCS:
            undocumented = [n for n, f in fields.items() if not f.description]
            assert not undocumented, f"{stage} {name!r}: no description for {undocumented}"
        # a default lives in `Params` only, never again in the constructor's signature
        if isinstance(entry, type):
            sig = inspect.signature(entry.__init__)
            doubled = [p for p in sig.parameters.values()
                       if p.name in fields and p.default is not inspect.Parameter.empty]
            assert not doubled, f"{stage} {name!r} repeats defaults of {doubled}"


def test_list_prints_a_table_per_stage_and_refuses_unknown_stages():
    out = run_cli("list", "defenses")
    assert out.returncode == 0, out.stderr
    assert "neural_cleanse" in out.stdout and "init_cost" in out.stdout
    assert "mitigations" not in out.stdout
    bad = run_cli("list", "wizards")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    with pytest.raises(TrustlabError, match="unknown registry 'wizards'"):
        get_registry("wizards")


def test_a_name_must_be_registered_and_entries_must_declare_params():
    from trustlab.mitigations import MITIGATIONS

    with pytest.raises(TrustlabError, match="unknown mitigation 'os:system'; choose one of"):
        MITIGATIONS.get("os:system")

    class NoParams:
        name = "no_params"

    with pytest.raises(TypeError, match="Params"):
        MITIGATIONS.register(NoParams)
    with pytest.raises(TrustlabError, match="already registered"):
        MITIGATIONS.register(type("Dup", (), {"name": "reweighing", "Params": Params}))
    with pytest.raises(TrustlabError, match="built in"):
        MITIGATIONS.unregister("reweighing")


TABULAR = """
name: toy-{tag}
dataset: {{name: german, sensitive: sex, privileged: male}}
model: {{name: logistic_regression}}
mitigation: {{name: {mitigation}, params: {{label: {label}}}}}
seeds: [0, 1]
"""


def _write(tmp_path, tag, mitigation="predict_constant", label=1):
    path = tmp_path / f"{tag}.yaml"
    path.write_text(textwrap.dedent(TABULAR.format(tag=tag, mitigation=mitigation,
                                                   label=label)))
    return path


def test_an_entry_registered_in_code_runs_in_spawned_workers(tmp_path):
    from toy_plugins import PredictConstant

    from trustlab.experiments.config import load_experiment
    from trustlab.experiments.runner import run_experiment
    from trustlab.experiments.store import Store
    from trustlab.mitigations import MITIGATIONS

    with pytest.raises(TrustlabError, match="unknown mitigation 'predict_constant'"):
        load_experiment(_write(tmp_path, "before"))
    MITIGATIONS.register(PredictConstant)
    try:
        with pytest.raises(TrustlabError, match="mitigation.params.label"):
            load_experiment(_write(tmp_path, "bad", label=3))
        exp = load_experiment(_write(tmp_path, "ok", label=0))
        out = tmp_path / "out"
        summary = run_experiment(exp, out, executor="local", workers=2, progress=False)
        assert summary.ok and summary.n_ok == 2, summary
        with Store(out) as store:
            trials = store.trials()
        # the workers ran the toy: nobody is selected, so the selection rate is 0 exactly
        assert [t["metrics"]["selection_rate"] for t in trials] == [0.0, 0.0]
        assert all(t["metrics"]["recall"] == 0.0 for t in trials)
    finally:
        MITIGATIONS.unregister("predict_constant")
    assert "predict_constant" not in MITIGATIONS


def test_third_party_entries_come_from_entry_points(tmp_path, monkeypatch):
    from trustlab.mitigations import MITIGATIONS

    dist = tmp_path / "toyplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[trustlab.mitigations]\n"
        "constant_from_ep = toy_plugins:PredictConstant\n"
        "broken_plugin = toyplug_missing_module:Thing\n"
        "reweighing = toy_plugins:PredictConstant\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(MITIGATIONS, "_entry_points_read", False)
    try:
        with pytest.warns(UserWarning, match="'reweighing' already exists"):
            names = MITIGATIONS.names()
        assert {"constant_from_ep", "broken_plugin"} <= set(names)
        from toy_plugins import PredictConstant

        assert MITIGATIONS.get("constant_from_ep") is PredictConstant
        assert MITIGATIONS.get("reweighing") is not PredictConstant  # built-ins win
        with pytest.raises(TrustlabError, match="broken_plugin.*cannot load"):
            MITIGATIONS.get("broken_plugin")
    finally:
        for name in ("constant_from_ep", "broken_plugin"):
            MITIGATIONS.unregister(name)


def test_the_engine_never_imports_the_report():
    code = ("import sys\n"
            "from trustlab.registry import get_registry\n"
            "from trustlab.experiments import runner, config\n"
            "for kind in get_registry('kinds').names(): get_registry('kinds').get(kind)\n"
            "assert not [m for m in sys.modules if m.startswith('trustlab.report')], "
            "sorted(m for m in sys.modules if m.startswith('trustlab.report'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr

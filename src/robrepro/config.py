"""Load, merge and validate the workflow configuration.

The schema (``schemas/config.schema.yaml``, JSON Schema Draft 2020-12) is the single source of
defaults: validation fills every missing key from it. Every error is reported at once, each with the
path of the offending key (``node.fig1.train.epochs: -1 is less than the minimum of 1``). Checks the
schema cannot express (model and objective keyword arguments against their constructors, epsilon
with ``**kwargs`` aside) run after it. Snakemake calls :func:`validate` at parse time, before any job starts.
"""

from __future__ import annotations

import copy
import inspect
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """A configuration that does not validate; the message lists every offending key."""


def schema() -> dict[str, Any]:
    return yaml.safe_load(resources.files("robrepro").joinpath("schemas/config.schema.yaml").read_text())


def _with_defaults(validator_cls):
    validate_props = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema_):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema_)

    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _path(err: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in err.absolute_path) or "<top level>"


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults into ``config`` in place and return it; raise :class:`ConfigError` listing all problems."""
    sch = schema()
    errors = sorted(_Validator(sch).iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    msgs = [f"  {_path(e)}: {e.message}" for e in errors] + _semantic_errors(config)
    if msgs:
        raise ConfigError("invalid configuration:\n" + "\n".join(msgs))
    return config


def load(*paths: str | Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge YAML files left to right (later wins, recursively), apply overrides, validate."""
    cfg: dict[str, Any] = {}
    for p in paths:
        merge(cfg, yaml.safe_load(Path(p).read_text()) or {})
    if overrides:
        merge(cfg, overrides)
    return validate(cfg)


def merge(base: dict, other: dict) -> dict:
    """Recursive dict update, as Snakemake merges several config files."""
    for k, v in other.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def _kwargs_errors(where: str, fn, kwargs: dict[str, Any], skip=("self",)) -> list[str]:
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return []
    allowed = set(params) - set(skip)
    return [f"  {where}.{k}: unknown parameter; allowed: {', '.join(sorted(allowed))}" for k in kwargs if k not in allowed]


def _semantic_errors(config: dict[str, Any]) -> list[str]:
    from . import attacks, models, objectives

    model_registry, objective_registry, attack_registry = models.registry(), objectives.registry(), attacks.registry()
    errs: list[str] = []
    geometry = ("in_channels", "image_size", "num_classes")

    def walk(node, path):
        if isinstance(node, dict):
            if "model" in node and isinstance(node["model"], dict) and "name" in node["model"]:
                m = dict(node["model"])
                name = m.pop("name")
                if name not in model_registry:
                    errs.append(f"  {path}.model.name: unknown model {name!r}; known: {', '.join(sorted(model_registry))}")
                else:
                    errs.extend(_kwargs_errors(f"{path}.model", model_registry[name], m, skip=geometry))
            if "objective" in node and isinstance(node["objective"], dict):
                o = dict(node["objective"])
                name = o.pop("name", None)
                if name not in objective_registry:
                    errs.append(f"  {path}.objective.name: unknown objective {name!r}; known: {', '.join(sorted(objective_registry))}")
                else:
                    errs.extend(_kwargs_errors(f"{path}.objective", objective_registry[name].__init__, o))
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else k)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}.{i}")

    walk(config, "")
    for path, spec in _attack_specs(config, ""):
        if spec.get("name") in attack_registry:
            a = dict(spec)
            errs.extend(_kwargs_errors(path, attack_registry[a.pop("name")].fn, a, skip=("model", "x", "y", "eps", "generator")))
    return errs


def _attack_specs(node, path):
    if isinstance(node, dict):
        for k, v in node.items():
            p = f"{path}.{k}" if path else k
            if k == "attacks" and isinstance(v, dict):
                for name, spec in v.items():
                    if isinstance(spec, dict):
                        yield f"{p}.{name}", spec
            else:
                yield from _attack_specs(v, p)

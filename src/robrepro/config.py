"""Load, compose and validate the workflow configuration.

Layers, later wins (recursively): each registered paper's ``config/papers/<paper>.yaml`` (its paper
tier, every key commented), then its ``config/papers/<paper>.<tier>.yaml`` overrides for the tier in
force, then the user's configuration (``config/config.yaml`` and any ``--configfile``/``--config``).
So a paper brings its own configuration files, and a tier is chosen by one key, ``tier``.

The schema (``schemas/config.schema.yaml`` for the shared keys, plus each paper's
``papers/<paper>.schema.yaml`` under its name; JSON Schema Draft 2020-12) is the single source of
defaults: validation fills every missing key. Every error is reported at once, each with the path of
the offending key (``node.fig1.train.epochs: -1 is less than the minimum of 1``). Checks the schema
cannot express run after it: every model, objective and attack setting is checked against the
parameters its constructor or function accepts. Snakemake calls :func:`compose` at parse time,
before any job starts.
"""

from __future__ import annotations

import copy
import inspect
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from . import schemawalk

try:
    import jsonschema
except ImportError:  # a compute node with PyTorch alone (robrepro selfcheck): defaults are filled, not checked
    jsonschema = None


class ConfigError(ValueError):
    """A configuration that does not validate; the message lists every offending key."""


def schema() -> dict[str, Any]:
    """The full schema: shared keys plus one property per registered paper."""
    from . import papers

    sch = yaml.safe_load(resources.files("robrepro").joinpath("schemas/config.schema.yaml").read_text())
    for name, cls in papers.registry().items():
        part = cls.schema()
        for key, value in part.pop("$defs", {}).items():
            if key in sch["$defs"]:
                raise ValueError(f"schema of paper {name!r} redefines $defs/{key}")
            sch["$defs"][key] = value
        sch["properties"][name] = part
    return sch


def _with_defaults(validator_cls):
    validate_props = validator_cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema_):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema_)

    return jsonschema.validators.extend(validator_cls, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator) if jsonschema else None


def fill_defaults(sch: dict[str, Any], node: Any, root: dict[str, Any] | None = None) -> None:
    """Fill the schema's defaults into ``node`` without validating: what the validator fills, for
    where jsonschema is not installed. Follows ``$ref``, ``properties``, ``additionalProperties``,
    ``items``, and ``if``/``then`` whose ``if`` tests properties' ``const``."""
    root = root or sch
    while isinstance(sch, dict) and "$ref" in sch:
        sch = {**root["$defs"][sch["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in sch.items() if k != "$ref"}}
    if not isinstance(sch, dict):
        return
    if isinstance(node, dict):
        props = dict(sch.get("properties", {}))
        cond = sch.get("if", {}).get("properties", {})
        if "then" in sch and cond and all(k in node and "const" in c and node[k] == c["const"] for k, c in cond.items()):
            for k, sub in sch["then"].get("properties", {}).items():
                props[k] = {**props.get(k, {}), **sub}
        extra = sch.get("additionalProperties")
        for key, sub in props.items():
            if "default" in sub and key not in node:
                node[key] = copy.deepcopy(sub["default"])
        for key, value in node.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                fill_defaults(sub, value, root)
    elif isinstance(node, list) and isinstance(sch.get("items"), dict):
        for value in node:
            fill_defaults(sch["items"], value, root)


def _path(err: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in err.absolute_path) or "<top level>"


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults into ``config`` in place and return it; raise :class:`ConfigError` listing all problems."""
    sch = schema()
    if _Validator is None:
        fill_defaults(sch, config)
        errors = []
    else:
        errors = sorted(_Validator(sch).iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    msgs = [f"  {_path(e)}: {e.message}" for e in errors] + _semantic_errors(config, sch)
    if msgs:
        raise ConfigError("invalid configuration:\n" + "\n".join(msgs))
    return config


def paper_layers(tier: str, config_dir: str | Path) -> dict[str, Any]:
    """Every registered paper's own configuration for ``tier``: its paper-tier file, then its tier overrides."""
    from . import papers

    out: dict[str, Any] = {}
    for name in papers.registry():
        for f in (Path(config_dir) / "papers" / f"{name}.yaml", Path(config_dir) / "papers" / f"{name}.{tier}.yaml"):
            if f.exists():
                merge(out, yaml.safe_load(f.read_text()) or {})
    return out


def compose(user: dict[str, Any], config_dir: str | Path) -> dict[str, Any]:
    """The paper layers under the user's configuration, validated. ``user`` is left unchanged."""
    tier = user.get("tier", "paper")
    if tier not in ("smoke", "lite", "paper"):
        raise ConfigError(f"invalid configuration:\n  tier: {tier!r} is not one of ['smoke', 'lite', 'paper']")
    return validate(merge(paper_layers(tier, config_dir), copy.deepcopy(user)))


def load(*paths: str | Path, overrides: dict[str, Any] | None = None, config_dir: str | Path | None = None) -> dict[str, Any]:
    """Merge YAML files left to right (later wins, recursively), apply overrides, compose and validate.

    The paper layers come from ``config_dir`` (default: the folder of the first file).
    """
    cfg: dict[str, Any] = {}
    for p in paths:
        merge(cfg, yaml.safe_load(Path(p).read_text()) or {})
    if overrides:
        merge(cfg, overrides)
    return compose(cfg, config_dir or (Path(paths[0]).parent if paths else "config"))


def user_files(files: list[str | Path], config_dir: str | Path) -> list[Path]:
    """The files Snakemake merges, in its order: the Snakefile's ``configfile:`` (``config.yaml`` of the
    workflow's configuration folder) first, then each ``--configfile``. A file given alone would
    otherwise be checked without the base the workflow always loads under it."""
    base = Path(config_dir) / "config.yaml"
    given = [Path(f) for f in files]
    rest = [f for f in given if not (f.exists() and base.exists() and f.resolve() == base.resolve())]
    return ([base] if base.exists() else []) + rest


def merge(base: dict, other: dict) -> dict:
    """Recursive dict update, as Snakemake merges several config files."""
    for k, v in other.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def kwargs_errors(where: str, fn, kwargs: dict[str, Any], skip=("self",)) -> list[str]:
    """Keys of ``kwargs`` that ``fn`` does not name as parameters. A ``**kwargs`` catch-all accepts
    nothing extra here: a setting must name a parameter, or it would fail later inside a job."""
    params = inspect.signature(fn).parameters
    allowed = {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - set(skip)
    return [
        f"  {where}.{k}: unknown parameter; " + (f"allowed: {', '.join(sorted(allowed))}" if allowed else "this component takes no parameters")
        for k in kwargs
        if k not in allowed
    ]


def _value_errors(cls, params: dict[str, Any], path: str) -> list[str]:
    """Build the objective once: its constructor is the one authority on valid values (ranges,
    enums), so an out-of-range setting fails here, before any job, instead of inside a training job.
    Parameters the plan sets per run (``plan_sets``: e.g. certified training's eps_max) get the
    objective's own stand-in values, so that the configured ones can be checked."""
    try:
        cls(**{**getattr(cls, "plan_sets", {}), **params})
    except (ValueError, TypeError, KeyError) as e:
        msg = str(e).strip("'\"")
        # Name the offending key when the constructor's message names it.
        key = next((k for k in params if re.search(rf"\b{re.escape(k)}\b", msg)), None)
        return [f"  {path}.{key}: {msg}" if key else f"  {path}: {msg}"]
    return []


def _semantic_errors(config: dict[str, Any], sch: dict[str, Any]) -> list[str]:
    """Walk the configuration beside its schema; check every model, objective and attack setting."""
    from . import attacks, data, models, objectives, papers

    registries = {
        "model": (models.registry(), lambda f: f, ("in_channels", "image_size", "num_classes")),
        "objective": (objectives.registry(), lambda c: c.__init__, ("self",)),
        "attack": (attacks.registry(), lambda a: a.fn, ("model", "x", "y", "eps", "generator")),
    }
    errs: list[str] = []

    def check(kind: str, node: dict, path: str) -> None:
        reg, fn_of, skip = registries[kind]
        rest = dict(node)
        name = rest.pop("name", None)
        if name not in reg:
            errs.append(f"  {path}.name: unknown {kind} {name!r}; known: {', '.join(sorted(reg))}")
        else:
            bad = kwargs_errors(path, fn_of(reg[name]), rest, skip=skip)
            errs.extend(bad)
            if kind == "objective" and not bad:
                errs.extend(_value_errors(reg[name], rest, path))

    def visit(written, _, node, path) -> bool:
        # A model, objective or attack setting is checked against its registry, not walked further.
        ref = written.get("$ref", "").rsplit("/", 1)[-1] if isinstance(written, dict) else ""
        if ref in registries and isinstance(node, dict):
            check(ref, node, path)
            return False
        return True

    schemawalk.walk(sch, sch, config, visit)
    errs.extend(_resources_errors(config.get("resources", {})))
    known = papers.registry()
    for i, p in enumerate(config.get("papers") or []):
        if p not in known:
            errs.append(f"  papers.{i}: unknown paper {p!r}; known: {', '.join(sorted(known))}")
    for name, d in config.get("data", {}).items():
        if isinstance(d, dict) and d.get("source") == "synthetic" and name in data.INFO and not data.INFO[name].synthetic:
            errs.append(f"  data.{name}.source: {name} has no synthetic stand-in")
    return errs


def resource_names() -> set[str]:
    """The keys of ``resources`` a job can ask for: ``train``, and the name each kind of evaluation job declares."""
    from .evaluations import registry

    return {"train", *(k.resources for k in registry().values())}


def _resources_errors(res: dict[str, Any]) -> list[str]:
    # A misspelled key (``atack``) would otherwise be ignored: its jobs would silently get the defaults.
    known = resource_names()
    return [f"  resources.{k}: unknown kind of job; known: {', '.join(sorted(known))}" for k in res if k not in known]

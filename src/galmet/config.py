"""Loading and validating config.yaml against the JSON schema shipped with the package.

The schema (``schemas/config.schema.yaml``) is the single documentation of every key; the
workflow and the ``galmet`` command both validate through :func:`validate_config`, which fills
defaults and turns schema errors into one message that names the key and the fix.
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
import re
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from galmet.backbones import AUTO_LAYER, BACKBONES, saliency_layers
from galmet.targets import TARGETS

SCHEMA_PATH = Path(str(resources.files("galmet") / "schemas" / "config.schema.yaml"))
# Device files of a GPU that torch can use: NVIDIA's, ROCm's, WSL2's.
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")
# The keys that say which experiments a config runs: required, without a default (the schema's
# top-level `required`), so that a config that leaves one out is refused rather than run with a
# value it did not choose.
EXPERIMENT_KEYS = ("targets", "resolutions", "seeds", "ensemble")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and says what is expected."""


def load_schema() -> dict:
    """The schema, with the allowed ``targets`` taken from the registry in galmet.targets, the
    cutout services (``cutouts.source``, with their defaults in the descriptions) from the one in
    galmet.cutouts.base, and ``train.arch`` and ``saliency.layer`` from galmet.backbones (so that
    registering a target, a service or a backbone there is all it takes for the config to accept
    it)."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    schema["properties"]["targets"]["items"] = {"enum": list(TARGETS)}
    _cutout_services(schema["properties"]["cutouts"]["properties"])
    schema["properties"]["train"]["properties"]["arch"]["enum"] = list(BACKBONES)
    schema["properties"]["saliency"]["properties"]["layer"]["enum"] = [AUTO_LAYER, *saliency_layers()]
    return schema


def _cutout_services(props: dict) -> None:
    """``cutouts.source``'s enum (``local`` and every registered service) and the services'
    own values in the descriptions that depend on them."""
    from galmet.cutouts.base import PROVIDERS, get_provider

    providers = [get_provider(name) for name in PROVIDERS]
    props["source"]["enum"] = ["local", *PROVIDERS]
    props["source"]["description"] += "; " + "; ".join(f"{p.name}: {p.summary}" for p in providers)
    for key, attr in (("concurrency", "default_concurrency"), ("max_requests_per_second", "default_rate"),
                      ("base_url", "default_base_url")):
        values = ", ".join(f"{p.name} {getattr(p, attr):g}" if attr != "default_base_url"
                           else f"{p.name} {p.default_base_url}" for p in providers)
        props[key]["description"] += f" (defaults: {values})"


def _with_defaults(validator_class):
    """A validator that fills ``default`` values into objects as it validates them."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft7Validator)


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    key = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in allowed] if isinstance(error.instance, dict) else []
        hints = [f"{k!r}: did you mean {m[0]!r}?" for k in unknown
                 if (m := difflib.get_close_matches(k, allowed, n=1, cutoff=0.6))]
        hint = f" ({'; '.join(hints)})" if hints else ""
        return f"{error.message} under {key}{hint}; allowed keys: {', '.join(allowed)}"
    hint = error.schema.get("description")
    msg = f"config key {key}: {error.message}"
    return f"{msg} ({hint})" if hint else msg


_INT = re.compile(r"[+-]?\d+")
_NULL = {"null", "none", "~"}
_BOOL = {"true": True, "false": False, "yes": True, "no": False}


def coerce_to_schema(value, schema: dict):
    """``value`` with strings turned into the types ``schema`` asks for, where they convert.

    Snakemake hands ``--config key=value`` over with list items and nested values as strings
    (``resolutions=[32]`` arrives as ``["32"]``); this makes them what a YAML file would give.
    A string that converts to none of the schema's types is left as it is, for validation to name.
    """
    if isinstance(value, dict):
        props = schema.get("properties", {})
        return {k: coerce_to_schema(v, props[k]) if k in props else v for k, v in value.items()}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [coerce_to_schema(v, schema["items"]) for v in value]
    if isinstance(value, str):
        return _from_string(value, schema)
    return value


def _from_string(text: str, schema: dict):
    for alternative in schema.get("oneOf", []) + schema.get("anyOf", []):
        value = _from_string(text, alternative)
        if value is not text:
            return value
    if "enum" in schema:
        return next((e for e in schema["enum"] if str(e) == text), text)
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    low = text.strip().lower()
    if "integer" in types and _INT.fullmatch(text.strip()):
        return int(text)
    if "number" in types:
        try:
            return float(text)
        except ValueError:
            pass
    if "boolean" in types and low in _BOOL:
        return _BOOL[low]
    if "null" in types and low in _NULL:
        return None
    return text


def validate_config(config: dict) -> dict:
    """Validate ``config`` in place (filling defaults) and return it; raise ConfigError."""
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError(f"the configuration must be a mapping of keys, got {type(config).__name__}")
    schema = load_schema()
    config.update(coerce_to_schema(config, schema))
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    unset = [k for k in EXPERIMENT_KEYS if k not in config]
    errors = [e for e in errors if not (e.validator == "required" and not e.absolute_path)]
    lines = [_describe(e) for e in errors]
    if unset:
        lines.insert(0, f"config key{'s' * (len(unset) > 1)} {', '.join(unset)} not set: the experiment keys "
                        f"({', '.join(EXPERIMENT_KEYS)}) have no default, so that a config runs only the "
                        "experiments it names (ensemble: null for none); a file of a few keys is layered on "
                        "a whole config, both files after one --configfile: --configfile config.yaml my.yaml")
    if lines:
        text = "\n  - ".join(lines)
        raise ConfigError(f"invalid configuration ({len(lines)} problem(s)):\n  - {text}")
    _check_consistency(config)
    return config


@functools.lru_cache(maxsize=1)
def _cached_schema() -> dict:
    return load_schema()


def default(key: str):
    """The schema's default of the config key ``key`` (dotted: ``"predict.tta"``): the value a
    library function's optional argument takes when not given, so that each default is written
    once, in the schema. KeyError for a key without one."""
    node = _cached_schema()
    for part in key.split("."):
        node = node.get("properties", {}).get(part)
        if node is None:
            raise KeyError(f"no config key {key} in {SCHEMA_PATH.name}")
    if "default" not in node:
        raise KeyError(f"config key {key} has no default in {SCHEMA_PATH.name}")
    return copy.deepcopy(node["default"])


def section(name: str, values: dict | None = None) -> dict:
    """The config section ``name`` (``train``, ``predict``, ``saliency``...): ``values`` validated
    against its part of the schema, every missing key (also nested) filled with the schema's
    default; raise ConfigError naming the key. For library callers and the command line, which
    take their defaults from the schema as the workflow does (``values`` is not changed)."""
    schema = _cached_schema()  # read only here: the validator fills defaults into copies
    if name not in schema["properties"]:
        raise ConfigError(f"no config section {name!r}; sections: {', '.join(schema['properties'])}")
    part = {"type": "object", "properties": {name: schema["properties"][name]}}
    config = coerce_to_schema({name: copy.deepcopy(values) if values is not None else {}}, part)
    errors = sorted(_Validator(part).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = "\n  - ".join(_describe(e) for e in errors)
        raise ConfigError(f"invalid {name} settings ({len(errors)} problem(s)):\n  - {lines}")
    return config[name]


def _check_consistency(config: dict) -> None:
    fr = config["split"]["fractions"]
    total = fr["train"] + fr["valid"] + fr["test"]
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(f"config key split.fractions: train + valid + test = {total:g}, must be 1")
    width = min(config["cutouts"]["width"], config["cutouts"]["height"])
    ens = config.get("ensemble") or {}
    checks = [("resolutions", r) for r in config["resolutions"]] + [("ensemble.resolution", ens.get("resolution"))]
    for key, res in checks:
        if res is not None and res > width:
            raise ConfigError(
                f"config key {key}: {res} px is larger than the cutouts ({width} px); "
                "raise cutouts.width/height or drop that resolution"
            )
    if config["catalog"]["source"] == "table" and not config["catalog"].get("path"):
        raise ConfigError("config key catalog.path: required when catalog.source is 'table'")
    if config["cutouts"]["source"] == "local" and not config["cutouts"].get("local_dir"):
        raise ConfigError("config key cutouts.local_dir: required when cutouts.source is 'local'")
    _check_cutout_service(config["cutouts"])
    layer, arch = config["saliency"]["layer"], config["train"]["arch"]
    if layer != AUTO_LAYER and layer not in BACKBONES[arch].layers:
        raise ConfigError(f"config key saliency.layer: {layer!r} is not a layer of train.arch {arch} (it has "
                          f"{', '.join(BACKBONES[arch].layers)}); give one of those, or {AUTO_LAYER!r} for its default")


def _check_cutout_service(c: dict) -> None:
    """The service's own limits (size, square, layers) on the cutouts section."""
    if c["source"] == "local":
        return
    from galmet.cutouts.base import get_provider

    provider = get_provider(c["source"], base_url=c.get("base_url"))
    if c.get("layer") and not provider.layers:
        raise ConfigError(f"config key cutouts.layer: {c['source']} has no layers; drop the key")
    try:
        provider.check_size(c["width"], c["height"])
    except ValueError as exc:
        raise ConfigError(f"config keys cutouts.width/height: {exc}") from None


def check_inputs(config: dict) -> None:
    """What can be known before any job runs, from the input files themselves (relative paths
    from the working directory): local cutouts need their folder, and the local catalog table
    must have every target column."""
    cut = config["cutouts"]
    if cut["source"] == "local" and not Path(cut["local_dir"]).is_dir():
        where = "" if Path(cut["local_dir"]).is_absolute() else f" (relative to the working directory {Path.cwd()})"
        raise ConfigError(
            f"config key cutouts.local_dir: {cut['local_dir']} is not a directory{where}; set it to the folder of "
            "<objID>.jpg cutouts, or use a cutout service (cutouts.source: skyserver or legacysurvey)")
    cat = config["catalog"]
    path = Path(cat.get("path") or "")
    tables = (".csv", ".parquet", ".ecsv", ".vot")
    if cat["source"] != "table" or path.suffix.lower() not in tables or not path.is_file():
        return  # FITS and SkyServer catalogs are checked by the catalog rule
    from galmet.tables import table_columns

    columns = table_columns(path)
    missing = [t for t in config["targets"] if t not in columns]
    if missing:
        raise ConfigError(
            f"config key targets: {', '.join(missing)} not in the columns of catalog.path {path} "
            f"({', '.join(map(str, columns))}); drop it from targets or use a catalog that has it")


def _merge(base: dict, over: dict) -> dict:
    """``over`` merged into ``base`` key by key (nested mappings too), as Snakemake merges config files."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(source) -> dict:
    """Load a YAML file (or take a dict), validate it and fill defaults. A list of files is merged
    in order first, as ``snakemake --configfile a.yaml b.yaml`` merges them; errors name the files."""
    if isinstance(source, dict):
        return validate_config(copy.deepcopy(source))
    paths = [Path(p) for p in source] if isinstance(source, (list, tuple)) else [Path(source)]
    config = {}
    for path in paths:
        try:
            config = _merge(config, yaml.safe_load(path.read_text()) or {})
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    try:
        return validate_config(config)
    except ConfigError as exc:
        raise ConfigError(f"{', '.join(map(str, paths))}: {exc}") from None


def gpu_visible(device_files=GPU_DEVICE_FILES) -> bool:
    """Whether this machine shows torch a GPU, from its device files (so that the workflow need
    not import torch to plan its jobs). ``CUDA_VISIBLE_DEVICES=""`` hides them, as from torch."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") in ("", "-1"):
        return False
    return any(Path(p).exists() for p in device_files)


def gpu_jobs(device: str, device_files=GPU_DEVICE_FILES) -> int:
    """The ``gpu`` resource of a CNN job whose config ``device`` is ``device``: 1, so that
    ``--resources gpu=N`` runs N of them at a time, unless the job will run on the CPU (``cpu``,
    or ``auto`` on a machine without a GPU): 0, and it shares the cores (``--cores``) beside the
    other jobs. On SLURM the profile's set-resources ask for the GPU whatever this says."""
    return 0 if device == "cpu" or (device == "auto" and not gpu_visible(device_files)) else 1

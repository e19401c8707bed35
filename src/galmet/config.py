"""Loading and validating config.yaml against the JSON schema shipped with the package.

The schema (``schemas/config.schema.yaml``) is the single documentation of every key; the
workflow and the ``galmet`` command both validate through :func:`validate_config`, which fills
defaults and turns schema errors into one message that names the key and the fix.
"""

from __future__ import annotations

import copy
import os
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from galmet.targets import TARGETS

SCHEMA_PATH = Path(str(resources.files("galmet") / "schemas" / "config.schema.yaml"))


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and says what is expected."""


def load_schema() -> dict:
    """The schema, with the allowed ``targets`` taken from the registry in galmet.targets (so
    that registering a target there is all it takes for the config to accept it)."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    schema["properties"]["targets"]["items"] = {"enum": list(TARGETS)}
    return schema


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
        return f"{error.message} under {key}; allowed keys: {', '.join(allowed)}"
    hint = error.schema.get("description")
    msg = f"config key {key}: {error.message}"
    return f"{msg} ({hint})" if hint else msg


def validate_config(config: dict) -> dict:
    """Validate ``config`` in place (filling defaults) and return it; raise ConfigError."""
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError(f"the configuration must be a mapping of keys, got {type(config).__name__}")
    errors = sorted(_Validator(load_schema()).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = "\n  - ".join(_describe(e) for e in errors)
        raise ConfigError(f"invalid configuration ({len(errors)} problem(s)):\n  - {lines}")
    _check_consistency(config)
    return config


def _check_consistency(config: dict) -> None:
    fr = config["split"]["fractions"]
    total = fr["train"] + fr["valid"] + fr["test"]
    if abs(total - 1.0) > 1e-6:
        raise ConfigError(f"config key split.fractions: train + valid + test = {total:g}, must be 1")
    width = min(config["cutouts"]["width"], config["cutouts"]["height"])
    for res in config["resolutions"]:
        if res > width:
            raise ConfigError(
                f"config key resolutions: {res} px is larger than the cutouts ({width} px); "
                "raise cutouts.width/height or drop that resolution"
            )
    if config["catalog"]["source"] == "table" and not config["catalog"].get("path"):
        raise ConfigError("config key catalog.path: required when catalog.source is 'table'")
    if config["cutouts"]["source"] == "local" and not config["cutouts"].get("local_dir"):
        raise ConfigError("config key cutouts.local_dir: required when cutouts.source is 'local'")


def load_config(source: str | os.PathLike | dict) -> dict:
    """Load a YAML file (or take a dict), validate it and fill defaults."""
    if isinstance(source, dict):
        return validate_config(copy.deepcopy(source))
    path = Path(source)
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    try:
        return validate_config(config)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None

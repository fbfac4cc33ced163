"""Configuration: one TOML file, environment overrides, systemd credentials."""

from vspd.config.loader import DEFAULT_CONFIG_PATH, ConfigError, ConfigProblem, load_config
from vspd.config.model import CameraConfig, VspdConfig
from vspd.config.sources import SourceSpec, parse_source

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "CameraConfig",
    "ConfigError",
    "ConfigProblem",
    "SourceSpec",
    "VspdConfig",
    "load_config",
    "parse_source",
]

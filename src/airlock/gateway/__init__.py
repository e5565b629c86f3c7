"""The OpenAI-compatible gateway behind ``airlock serve``."""

from airlock.gateway.app import build_policy, create_app, create_app_from_env
from airlock.gateway.config import GatewayConfig, load_config, parse_config

__all__ = [
    "GatewayConfig",
    "build_policy",
    "create_app",
    "create_app_from_env",
    "load_config",
    "parse_config",
]

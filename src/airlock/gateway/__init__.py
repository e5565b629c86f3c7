"""The OpenAI-compatible gateway behind ``airlock serve``."""

from airlock.gateway.app import build_policy, create_app
from airlock.gateway.config import GatewayConfig, load_config

__all__ = ["GatewayConfig", "build_policy", "create_app", "load_config"]

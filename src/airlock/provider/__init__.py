"""Outbound side: the AI providers behind the gateway, and the secure client they share.

``create_provider(settings)`` builds the provider a :class:`ProviderSettings`
names. ``echo`` needs nothing; ``openai`` needs httpx (the ``gateway`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airlock.errors import ConfigurationError
from airlock.provider.base import ChatStream, Provider, ProviderRequest, Reply, usage_of
from airlock.provider.credentials import KeySource, ProviderKeys, Secret
from airlock.provider.echo import EchoProvider
from airlock.provider.retry import RetryPolicy, parse_retry_after
from airlock.provider.settings import ProviderSettings
from airlock.provider.tls import MINIMUM_TLS_VERSION, check_base_url, make_ssl_context

if TYPE_CHECKING:
    from airlock.provider.openai import OpenAIProvider

__all__ = [
    "MINIMUM_TLS_VERSION",
    "ChatStream",
    "EchoProvider",
    "KeySource",
    "OpenAIProvider",
    "Provider",
    "ProviderKeys",
    "ProviderRequest",
    "ProviderSettings",
    "Reply",
    "RetryPolicy",
    "Secret",
    "check_base_url",
    "create_provider",
    "make_ssl_context",
    "parse_retry_after",
    "usage_of",
]


def create_provider(settings: ProviderSettings, *, environ: Mapping[str, str] | None = None) -> Provider:
    """The provider ``settings.kind`` names, with its key read now (start-up, not per request)."""
    if settings.kind == "echo":
        return EchoProvider()
    if settings.kind == "openai":
        try:
            from airlock.provider.openai import OpenAIProvider
        except ImportError:  # pragma: no cover - exercised only without the gateway extra
            raise ConfigurationError(
                "provider.kind = 'openai' needs httpx: pip install 'asgi-airlock[gateway]'"
            ) from None
        return OpenAIProvider(settings, environ=environ)
    raise ConfigurationError(f"provider.kind {settings.kind!r} is not known")  # pragma: no cover


def __getattr__(name: str) -> Any:
    # OpenAIProvider imports httpx; importing airlock.provider must not need it.
    if name == "OpenAIProvider":
        from airlock.provider.openai import OpenAIProvider

        return OpenAIProvider
    raise AttributeError(f"module 'airlock.provider' has no attribute {name!r}")

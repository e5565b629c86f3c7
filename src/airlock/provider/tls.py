"""Transport security for outbound calls: HTTPS only, TLS >= 1.2, certificates always checked.

There is deliberately no option that turns verification off. A private provider
with its own certificate authority is reached by naming that CA's bundle
(``ca_bundle``), which then *replaces* the system store, as ``curl --cacert``
does, so a provider pinned to a private CA cannot be impersonated by a
certificate from any public one.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from urllib.parse import urlsplit

from airlock.errors import ConfigurationError

__all__ = ["MINIMUM_TLS_VERSION", "check_base_url", "is_loopback_host", "make_ssl_context"]

MINIMUM_TLS_VERSION = ssl.TLSVersion.TLSv1_2


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback IP literal (a name that merely resolves to one does not count)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_base_url(url: str, *, allow_http_loopback: bool = False, key: str = "provider.base_url") -> str:
    """``url`` without a trailing slash if it is a usable provider base URL, else ConfigurationError.

    ``https://`` always; ``http://`` only for a loopback host and only when
    ``allow_http_loopback`` says so (tests and local models such as Ollama or vLLM).
    Credentials in the URL are refused: they would end up in logs and tracebacks.
    """
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"{key} must be a URL such as 'https://api.openai.com/v1'")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ConfigurationError(f"{key} is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise ConfigurationError(f"{key} must start with https:// and name a host")
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            f"{key} must not carry credentials; put the provider key in an environment variable "
            "(provider.api_key_env) or a secret file (provider.api_key_file)"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{key} must not have a query or fragment (use provider.query)")
    if parts.scheme == "http":
        if not is_loopback_host(host):
            raise ConfigurationError(f"{key} must use https:// (plain http:// is allowed only for loopback)")
        if not allow_http_loopback:
            raise ConfigurationError(
                f"{key} uses plain http:// to a loopback address; set provider.allow_http_loopback = true "
                "if that is what you want (tests, local models)"
            )
    return url.rstrip("/")


def make_ssl_context(ca_bundle: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """A client context: TLS >= 1.2, certificate and hostname verification on.

    Built once at start-up (loading the trust store reads files); shared by every
    connection of the provider's pool.
    """
    if ca_bundle is not None:
        path = os.fspath(ca_bundle)
        if not os.path.isfile(path):
            raise ConfigurationError(f"provider.ca_bundle {path!r} is not a readable file")
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=path)
        except (ssl.SSLError, OSError):
            raise ConfigurationError(
                f"provider.ca_bundle {path!r} holds no usable PEM certificates"
            ) from None
    else:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    # create_default_context already does the next three; stating them keeps the
    # guarantee here, where a reader checks it, whatever a future default becomes.
    context.minimum_version = MINIMUM_TLS_VERSION
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    # Pooled connections speak HTTP/1.1 (httpx's default; no h2 dependency).
    context.set_alpn_protocols(["http/1.1"])
    return context

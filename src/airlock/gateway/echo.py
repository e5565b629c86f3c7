"""Moved to :mod:`airlock.provider.echo`; kept so existing imports keep working."""

from airlock.provider.echo import EchoProvider, last_user_text

__all__ = ["EchoProvider", "last_user_text"]

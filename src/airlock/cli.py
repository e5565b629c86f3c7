"""``airlock`` command line: ``serve`` and ``keys``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from airlock.errors import ConfigurationError

__all__ = ["main"]


def _curl_line(host: str, port: int, with_key: bool) -> str:
    shown = f"[{host}]" if ":" in host else host
    auth = ' -H "Authorization: Bearer $AIRLOCK_KEY"' if with_key else ""
    return (
        f"curl -s http://{shown}:{port}/v1/chat/completions -H 'Content-Type: application/json'{auth} "
        """-d '{"model":"echo","messages":[{"role":"user","""
        """"content":"Hello, my email is jane@example.com"}]}'"""
    )


def _serve(args: argparse.Namespace) -> int:
    from airlock.gateway.config import is_loopback, load_config

    config = load_config(args.config)
    host = args.host or config.server.host
    port = args.port or config.server.port
    has_keys = config.identity.keys_file is not None
    if not has_keys and not is_loopback(host):
        raise ConfigurationError(
            f"refusing to listen on {host} without client keys: set [identity] keys_file "
            "(make keys with 'airlock keys new') or bind 127.0.0.1"
        )
    try:
        import uvicorn
    except ImportError:
        raise ConfigurationError(
            "airlock serve needs the gateway extra: pip install 'asgi-airlock[gateway]'"
        ) from None

    from airlock.gateway.app import create_app

    app = create_app(config)
    if not has_keys:
        print(
            "airlock: warning: no client keys configured; callers are identified by address (loopback only)",
            file=sys.stderr,
        )
    print(f"airlock gateway on http://{host}:{port} (provider: echo). Try:", file=sys.stderr)
    print(_curl_line(host, port, has_keys), flush=True)
    uvicorn.run(app, host=host, port=port, log_level=args.log_level, server_header=False)
    return 0


def _keys_new(args: argparse.Namespace) -> int:
    from airlock.keys import check_key_name, generate_key, hash_key

    check_key_name(args.name)
    key = generate_key()
    print(f"key (shown once, give it to the client): {key}")
    print("add this line under [keys] in your keys file:")
    print(f'{args.name} = "{hash_key(key)}"')
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="airlock", description="airlock: guard user content on its way to AI providers"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the OpenAI-compatible gateway")
    serve.add_argument("--config", help="airlock.toml (default: offline echo provider on 127.0.0.1:8000)")
    serve.add_argument("--host", help="address to bind (default from config, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default from config, 8000)")
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.set_defaults(handler=_serve)

    keys = commands.add_parser("keys", help="client API keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_commands.add_parser("new", help="make a new client key and print its keys-file line")
    new.add_argument("--name", default="client", help="the key's name (limits and audit refer to it)")
    new.set_defaults(handler=_keys_new)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigurationError as exc:
        print(f"airlock: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

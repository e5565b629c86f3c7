"""``airlock`` command line: ``serve``, ``keys`` and ``doctor``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from airlock.errors import ConfigurationError

__all__ = ["main"]


def _curl_line(host: str, port: int, with_key: bool, model: str = "echo") -> str:
    shown = f"[{host}]" if ":" in host else host
    auth = ' -H "Authorization: Bearer $AIRLOCK_KEY"' if with_key else ""
    return (
        f"curl -s http://{shown}:{port}/v1/chat/completions -H 'Content-Type: application/json'{auth} "
        f"""-d '{{"model":"{model}","messages":[{{"role":"user","""
        """"content":"Hello, my email is jane@example.com"}]}'"""
    )


def _serve(args: argparse.Namespace) -> int:
    import os

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

    from airlock.gateway.app import CONFIG_ENV, create_app

    # Built here even with several workers: a bad key or config fails before any worker starts.
    app = create_app(config)
    if not has_keys:
        print(
            "airlock: warning: no client keys configured; callers are identified by address (loopback only)",
            file=sys.stderr,
        )
    provider = config.provider
    model = provider.models[0] if provider.models else ("echo" if provider.kind == "echo" else "gpt-4o-mini")
    print(f"airlock gateway on http://{host}:{port} (provider: {provider.kind}). Try:", file=sys.stderr)
    print(_curl_line(host, port, has_keys, model), flush=True)
    common = {"host": host, "port": port, "log_level": args.log_level, "server_header": False}
    workers = config.server.workers
    if workers > 1:
        # Each worker process imports the app itself and reads the same file.
        os.environ[CONFIG_ENV] = os.path.abspath(args.config) if args.config else ""
        uvicorn.run("airlock.gateway.app:create_app_from_env", factory=True, workers=workers, **common)
    else:
        uvicorn.run(app, **common)
    return 0


def _keys_new(args: argparse.Namespace) -> int:
    from airlock.keys import check_key_name, generate_key, hash_key

    check_key_name(args.name)
    key = generate_key()
    print(f"key (shown once, give it to the client): {key}")
    print("add this line under [keys] in your keys file (airlock re-reads it on change, no restart):")
    print(f'{args.name} = "{hash_key(key)}"')
    return 0


def _audit_verify(args: argparse.Namespace) -> int:
    from airlock.audit.verify import run_verify

    return run_verify(
        args.files, key_env=args.key_env, key_file=args.key_file, partial=args.partial, strict=args.strict
    )


def _add_audit_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser("audit", help="the audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser(
        "verify",
        help="check the hash chains of audit log files; exits 1 naming the first broken line",
        description="Check the hash chains of audit log files, given oldest first "
        "(e.g. audit.jsonl.2 audit.jsonl.1 audit.jsonl). Exit 0: verified; 1: broken; 2: cannot check.",
    )
    verify.add_argument("files", nargs="+", metavar="FILE")
    verify.add_argument(
        "--key-env",
        default="AIRLOCK_AUDIT_CHAIN_KEY",
        metavar="NAME",
        help="environment variable holding the chain key (default: AIRLOCK_AUDIT_CHAIN_KEY)",
    )
    verify.add_argument("--key-file", metavar="PATH", help="file holding the chain key")
    verify.add_argument(
        "--partial",
        action="store_true",
        help="accept chains that begin before the given files (older rotated files gone)",
    )
    verify.add_argument("--strict", action="store_true", help="fail on lines that are not audit events")
    verify.set_defaults(handler=_audit_verify)


def _doctor(args: argparse.Namespace) -> int:
    from airlock.gateway.doctor import format_table, run_checks

    checks = run_checks(args.config, online=not args.offline)
    print(format_table(checks))
    failed = [check.name for check in checks if check.status == "fail"]
    if failed:
        print(f"airlock doctor: {len(failed)} check(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _anonymize(args: argparse.Namespace) -> int:
    import json

    from airlock.anonymize import Anonymizer

    entities = [e.strip().upper() for e in args.entities.split(",") if e.strip()] if args.entities else None
    regions = [r.strip().upper() for r in args.regions.split(",") if r.strip()] if args.regions else None
    options: dict[str, object] = {"entities": entities, "operators": {"*": args.operator, "SECRET": "redact"}}
    if regions:
        options["phone_regions"] = regions
    anonymizer = Anonymizer(**options)  # type: ignore[arg-type]
    # Logs are not always valid UTF-8: carry undecodable bytes through unchanged
    # instead of failing (or printing them in an error).
    for stream in (sys.stdin, sys.stdout):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    out = sys.stdout
    if not args.jsonl:
        # Blocks of whole lines: bounded memory for any input size.
        block: list[str] = []
        size = 0
        for line in sys.stdin:
            block.append(line)
            size += len(line)
            if size >= 256 * 1024:
                out.write(anonymizer.anonymize("".join(block)).text)
                block, size = [], 0
        if block:
            out.write(anonymizer.anonymize("".join(block)).text)
        out.flush()
        return 0
    bad = 0
    for number, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            # Never echo the line: it may hold exactly what we are removing.
            print(f"airlock: line {number}: not a JSON object with a string 'text'; skipped", file=sys.stderr)
            bad += 1
            continue
        result = anonymizer.anonymize(record["text"])
        record["text"] = result.text
        record["findings"] = [
            {"entity": f.entity, "start": f.start, "end": f.end, "kind": f.kind} for f in result.findings
        ]
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()
    return 1 if bad else 0


def _add_anonymize_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    anonymize = commands.add_parser(
        "anonymize",
        help="remove personal data and secrets from text on stdin (logs, datasets)",
        description="Reads text (or JSON lines with a 'text' field) on stdin, writes it anonymized on "
        "stdout. Set AIRLOCK_ANONYMIZE_KEY for hashes/pseudonyms that are stable across runs.",
    )
    anonymize.add_argument("--jsonl", action="store_true", help="input and output are JSON lines with 'text'")
    operators = ["redact", "mask", "hash", "pseudonymize"]
    anonymize.add_argument("--operator", default="redact", choices=operators, help="default: redact")
    anonymize.add_argument("--entities", help="comma-separated entity types (default: all built-in)")
    anonymize.add_argument("--regions", help="comma-separated phone regions for national formats (US,GB,...)")
    anonymize.set_defaults(handler=_anonymize)


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

    doctor = commands.add_parser("doctor", help="check a gateway configuration (exit 1 on failures)")
    doctor.add_argument("--config", help="airlock.toml to check (default: the built-in offline default)")
    doctor.add_argument("--offline", action="store_true", help="skip the provider TLS handshake")
    doctor.set_defaults(handler=_doctor)
    _add_audit_commands(commands)
    _add_anonymize_command(commands)
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

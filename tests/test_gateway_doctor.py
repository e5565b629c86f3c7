"""`airlock doctor`: a pass/fail table for a configuration, non-zero exit on failures, offline-safe."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
import trustme

from airlock import generate_key, hash_key
from airlock.gateway.advisories import check_dependencies, release
from airlock.gateway.config import GatewayConfig, ServerConfig, parse_config
from airlock.gateway.doctor import Check, check_workers, format_table, run_checks

from fake_upstream import FakeUpstream, legacy_tls_server, serving
from helpers import free_port, redis_url

pytestmark = pytest.mark.anyio


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def airlock(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airlock", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "airlock.toml"
    path.write_text(text)
    return path


def test_the_default_config_passes_with_a_warning_about_client_keys() -> None:
    checks = by_name(run_checks(None))
    assert checks["config"].status == "pass"
    assert checks["provider key"].status == "skip"
    assert checks["client keys"].status == "warn"
    assert checks["dependencies"].status == "pass"
    assert not [c for c in checks.values() if c.status == "fail"]


def test_provider_key_present_in_the_environment(tmp_path: Path) -> None:
    config = write(tmp_path, '[provider]\nkind = "openai"\napi_key_env = "DOCTOR_TEST_KEY"\n')
    missing = by_name(run_checks(config, environ={}, online=False))["provider key"]
    assert missing.status == "fail"
    assert "DOCTOR_TEST_KEY is not set" in missing.detail
    key = "sk-test-doctor-0123456789abcdef"
    present = by_name(run_checks(config, environ={"DOCTOR_TEST_KEY": key}, online=False))["provider key"]
    assert present.status == "pass"
    assert "environment variable DOCTOR_TEST_KEY" in present.detail
    assert "none in the config file" in present.detail
    assert key not in present.detail


def test_a_key_in_the_config_file_fails_the_config_check(tmp_path: Path) -> None:
    config = write(tmp_path, '[provider]\nkind = "openai"\napi_key = "sk-test-doctor-0123456789abcdef"\n')
    checks = run_checks(config, online=False)
    assert checks[0].name == "config"
    assert checks[0].status == "fail"
    assert "api_key_env" in checks[0].detail
    assert "sk-test-doctor" not in format_table(checks)


def test_a_secret_file_readable_by_others_is_warned(tmp_path: Path) -> None:
    secret = tmp_path / "openai"
    secret.write_text("sk-test-doctor-0123456789abcdef")
    config = write(tmp_path, '[provider]\nkind = "openai"\napi_key_file = "openai"\n')
    secret.chmod(0o644)
    assert by_name(run_checks(config, online=False))["provider key"].status == "warn"
    secret.chmod(0o600)
    assert by_name(run_checks(config, online=False))["provider key"].status == "pass"


async def test_tls_to_the_provider_checked_when_reachable(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    async with serving(FakeUpstream(), ssl_certfile=str(tmp_path / "server.pem")) as port:
        base = f'[provider]\nkind = "openai"\nbase_url = "https://127.0.0.1:{port}/v1"\n'
        trusted = write(tmp_path, base + 'ca_bundle = "ca.pem"\n')
        ok = by_name(await anyio.to_thread.run_sync(run_checks, trusted))["provider TLS"]
        untrusted = write(tmp_path, base)
        refused = by_name(await anyio.to_thread.run_sync(run_checks, untrusted))["provider TLS"]
    assert ok.status == "pass"
    assert "TLSv1.3" in ok.detail or "TLSv1.2" in ok.detail
    assert refused.status == "fail"
    assert "certificate not accepted" in refused.detail
    with legacy_tls_server(ca.issue_cert("127.0.0.1")) as (legacy_port, _):
        legacy = write(
            tmp_path,
            f'[provider]\nkind = "openai"\nbase_url = "https://127.0.0.1:{legacy_port}/v1"\n'
            'ca_bundle = "ca.pem"\n',
        )
        old = by_name(await anyio.to_thread.run_sync(run_checks, legacy))["provider TLS"]
    assert old.status == "fail"
    assert "handshake failed" in old.detail


def test_an_unreachable_provider_is_skipped_not_failed(tmp_path: Path) -> None:
    config = write(
        tmp_path, f'[provider]\nkind = "openai"\nbase_url = "https://127.0.0.1:{free_port()}/v1"\n'
    )
    check = by_name(run_checks(config))["provider TLS"]
    assert check.status == "skip"
    assert "unreachable" in check.detail
    assert by_name(run_checks(config, online=False))["provider TLS"].detail == "--offline"


def test_client_keys(tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text(f'[keys]\nalice = "{hash_key(generate_key())}"\n')
    good = write(tmp_path, '[identity]\nkeys_file = "keys.toml"\n')
    assert by_name(run_checks(good))["client keys"].status == "pass"
    keys.write_text('[keys]\nalice = "not-a-hash"\n')
    assert by_name(run_checks(good))["client keys"].status == "fail"
    public = write(tmp_path, '[server]\nhost = "0.0.0.0"\n')
    assert by_name(run_checks(public))["client keys"].status == "fail"


def test_several_workers_with_memory_storage_are_warned() -> None:
    config = GatewayConfig(server=ServerConfig(workers=4))
    assert check_workers(config, ["memory://"]).status == "warn"
    assert check_workers(config, ["redis://127.0.0.1:6379"]).status == "pass"
    assert check_workers(GatewayConfig(), ["memory://"]).status == "pass"
    assert parse_config({"server": {"workers": 4}}).server.workers == 4


def test_known_outdated_dependencies_are_listed() -> None:
    versions = {"h11": "0.14.0", "starlette": "1.0.0", "python-json-logger": "3.2.1", "anyio": "4.0"}
    check = check_dependencies(versions.get)
    assert check.status == "fail"
    assert "h11 0.14.0 < 0.16.0 (CVE-2025-43859" in check.detail
    assert "python-json-logger 3.2.1 < 3.3.0" in check.detail
    assert "anyio 4.0 < 4.4 (airlock's minimum)" in check.detail
    assert "starlette" not in check.detail
    assert check_dependencies({"h11": "0.16.0"}.get).status == "pass"


def test_versions_compare_by_release() -> None:
    assert release("1.10.0rc1") == (1, 10, 0)
    assert release("2024.7.4") > release("2024.07.03")
    assert release("0.9") < release("0.16.0")


def test_the_command_prints_a_table_and_exits_non_zero_on_failure(tmp_path: Path) -> None:
    ok = airlock("doctor", "--offline")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0].split() == ["check", "status", "detail"]
    assert "config" in ok.stdout
    bad = write(tmp_path, '[provider]\nkind = "openai"\napi_key_env = "DOCTOR_CLI_MISSING"\n')
    failed = airlock("doctor", "--config", str(bad), "--offline", env={"DOCTOR_CLI_MISSING": ""})
    assert failed.returncode == 1
    assert "fail" in failed.stdout
    assert "provider key" in failed.stderr


def test_limit_storage_reachability(tmp_path: Path) -> None:
    memory = write(tmp_path, '[throttle]\nrequests = "5/second"\n')
    assert by_name(run_checks(memory))["limit storage"].status == "pass"
    dead = write(
        tmp_path, f'[throttle]\nrequests = "5/second"\nstorage = "redis://127.0.0.1:{free_port()}/0"\n'
    )
    check = by_name(run_checks(dead))["limit storage"]
    assert check.status == "fail"
    assert "unreachable: redis://127.0.0.1:" in check.detail
    assert by_name(run_checks(None))["limit storage"].status == "skip"


@pytest.mark.redis
def test_a_live_redis_storage_passes(tmp_path: Path) -> None:
    url = redis_url()
    config = write(
        tmp_path, f'[throttle]\nrequests = "5/second"\nstorage = "{url}"\n[budget]\ntokens = "100/minute"\n'
    )
    check = by_name(run_checks(config))["limit storage"]
    assert check.status == "pass", check.detail


def test_several_workers_on_memory_storage_warn_through_the_config(tmp_path: Path) -> None:
    config = write(tmp_path, '[server]\nworkers = 4\n[budget]\ntokens = "100/minute"\n')
    check = by_name(run_checks(config))["workers"]
    assert check.status == "warn"
    assert "memory://" in check.detail


def test_audit_sink_writable(tmp_path: Path) -> None:
    good = write(tmp_path, '[audit]\npath = "logs/audit.jsonl"\n')
    (tmp_path / "logs").mkdir()
    assert by_name(run_checks(good))["audit sink"].status == "pass"
    missing = write(tmp_path, '[audit]\npath = "nowhere/audit.jsonl"\n')
    check = by_name(run_checks(missing))["audit sink"]
    assert check.status == "fail"
    assert "not writable" in check.detail
    assert by_name(run_checks(None))["audit sink"].status == "skip"


def test_stages_are_built_as_serve_would(tmp_path: Path) -> None:
    good = write(tmp_path, '[validation]\n[anonymize]\n[throttle]\nrequests = "1/second"\n')
    assert by_name(run_checks(good))["stages"].detail == "validation, anonymize, throttle"
    bad = write(tmp_path, '[anonymize]\nentities = ["NAME"]\n')
    check = by_name(run_checks(bad))["stages"]
    assert check.status == "fail"
    assert "unknown entity" in check.detail
    assert by_name(run_checks(None))["stages"].status == "pass"


def test_stage_keys_come_from_the_environment(tmp_path: Path) -> None:
    config = write(tmp_path, "[anonymize]\n[audit]\n")
    missing = by_name(run_checks(config, environ={}))["stage keys"]
    assert missing.status == "warn"
    assert "AIRLOCK_ANONYMIZE_KEY" in missing.detail
    assert "AIRLOCK_AUDIT_KEY" in missing.detail
    keys = {"AIRLOCK_ANONYMIZE_KEY": "k" * 32, "AIRLOCK_AUDIT_KEY": "a" * 32}
    assert by_name(run_checks(config, environ=keys))["stage keys"].status == "pass"

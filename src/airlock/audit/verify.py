"""``airlock audit verify``: check the hash chains of audit log files.

Reads the files in the order they were written (oldest rotated file first),
follows every chain in them (several processes may share one file or stream)
and stops at the first line that breaks one. Lines that are not audit events
(other logs on the same stdout) are skipped unless ``strict``.

What a passing check proves: no line of these files was altered, and none was
removed, inserted or reordered, nor a whole run of lines between two writer
starts in one file removed, except at the very end of each chain; with a chain
key, nobody without the key could have produced the lines. What it does not prove:
that lines were not cut from the end of a chain (compare the printed chain
heads with a copy kept elsewhere), that a whole file was not replaced by a
consistent one (unkeyed chains only), or that what was logged was true.
"""

from __future__ import annotations

import hmac
import os
import re
import sys
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from airlock.audit.chain import ALG_HMAC, ALG_SHA256, LineHasher, chain_member, unseal
from airlock.audit.hashing import CHAIN_KEY_ENV, load_key
from airlock.errors import ConfigurationError

__all__ = ["Failure", "Report", "describe", "run_verify", "verify_files"]

_CHAIN_MARK = re.compile(rb'"chain": ?\{"id"')
# How far back an "after" link may point within its chain (other writers' lines in between).
_RECENT = 4096


@dataclass(frozen=True)
class Failure:
    where: str
    message: str
    # 1: the log is broken; 2: it cannot be checked as asked (missing key, unreadable file).
    exit_code: int = 1

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class _Chain:
    seq: int
    hash: str
    where: str
    recent: OrderedDict[int, str] = field(default_factory=OrderedDict)

    def advance(self, seq: int, line_hash: str, where: str) -> None:
        self.seq, self.hash, self.where = seq, line_hash, where
        self.recent[seq] = line_hash
        if len(self.recent) > _RECENT:
            self.recent.popitem(last=False)


@dataclass
class Report:
    events: int = 0
    skipped: int = 0
    keyed: bool = False
    kid: str | None = None
    chains: dict[str, _Chain] = field(default_factory=dict)
    partial_starts: list[str] = field(default_factory=list)
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def heads(self) -> list[tuple[str, int, str]]:
        """(chain id, last seq, where) of every chain: anchors for truncation checks."""
        return [(chain_id, chain.seq, chain.where) for chain_id, chain in self.chains.items()]


def _lines(paths: Sequence[str]) -> Iterator[tuple[str, bytes]]:
    for path in paths:
        with open(path, "rb") as file:
            for number, raw in enumerate(file, 1):
                yield f"{path}:{number}", raw.rstrip(b"\r\n")


def _link_problem(chain: dict[str, Any], hasher: LineHasher | None) -> Failure | str | None:
    """Why this line's chain member cannot be checked with the given key, if it cannot."""
    chain_id, seq, prev = chain.get("id"), chain.get("seq"), chain.get("prev")
    if not isinstance(chain_id, str) or not chain_id or type(seq) is not int or seq < 0:
        return "malformed chain member"
    if prev is not None and not isinstance(prev, str):
        return "malformed chain member"
    alg, kid = chain.get("alg"), chain.get("kid")
    if alg not in (ALG_SHA256, ALG_HMAC):
        return f"unknown chain algorithm {str(alg)[:32]!r}"
    if hasher is None and alg == ALG_HMAC:
        return Failure(
            "", f"keyed chain (key id {str(kid)[:16]}): pass the chain key (--key-env, --key-file)", 2
        )
    if hasher is not None and (alg != ALG_HMAC or kid != hasher.kid):
        return f"not chained with the given key (alg {alg}, key id {str(kid)[:16]}, given {hasher.kid})"
    return None


def verify_files(
    paths: Sequence[str], *, key: bytes | None = None, partial: bool = False, strict: bool = False
) -> Report:
    """Check every chain in ``paths`` (oldest first); the report holds the first failure, if any."""
    report = Report(keyed=key is not None)
    keyed_hasher = LineHasher(key) if key is not None else None
    plain_hasher = LineHasher(None)
    report.kid = keyed_hasher.kid if keyed_hasher is not None else None
    chains = report.chains
    try:
        for where, line in _lines(paths):
            # Our events start with "{": any other line belongs to another log, not worth parsing.
            member = chain_member(line) if line.startswith(b"{") else None
            if member is None:
                # A line that still names a chain but no longer parses was altered or cut short.
                if strict or _CHAIN_MARK.search(line):
                    report.failure = Failure(where, "not an audit event with a chain (altered or cut short)")
                    return report
                report.skipped += 1
                continue
            problem = _link_problem(member, keyed_hasher)
            if isinstance(problem, Failure):
                report.failure = Failure(where, problem.message, problem.exit_code)
                return report
            if problem is not None:
                report.failure = Failure(where, problem)
                return report
            sealed = unseal(line)
            if sealed is None or sealed[1] != member.get("hash"):
                report.failure = Failure(where, "this line has no valid chain hash (altered or cut short)")
                return report
            body, line_hash = sealed
            hasher = keyed_hasher if member.get("alg") == ALG_HMAC else plain_hasher
            assert hasher is not None
            if not hmac.compare_digest(hasher(body), line_hash):
                report.failure = Failure(where, "this line was altered: its hash does not match its content")
                return report
            failure = _check_link(member, where, chains, partial, report)
            if failure is not None:
                report.failure = Failure(where, failure)
                return report
            chain_id, seq = member["id"], member["seq"]
            state = chains.get(chain_id)
            if state is None:
                state = chains[chain_id] = _Chain(seq, line_hash, where)
            state.advance(seq, line_hash, where)
            report.events += 1
    except OSError as exc:
        report.failure = Failure(getattr(exc, "filename", None) or "?", f"cannot read ({exc.strerror})", 2)
    return report


def _check_link(
    member: dict[str, Any], where: str, chains: dict[str, _Chain], partial: bool, report: Report
) -> str | None:
    chain_id, seq, prev = member["id"], member["seq"], member.get("prev")
    short = chain_id[:8]
    state = chains.get(chain_id)
    if state is None:
        if seq == 0:
            if prev is not None:
                return f"chain {short} starts (seq 0) with a prev hash"
            return _check_after(member.get("after"), chains, partial, report, where)
        if partial:
            report.partial_starts.append(where)
            return None
        return (
            f"chain {short} starts at seq {seq}: its earlier lines are missing "
            "(removed, or in an earlier rotated file: pass that file first, or --partial)"
        )
    last = f"seq {state.seq} ({state.where})"
    if seq <= state.seq:
        return f"chain {short} goes back from {last} to seq {seq}: lines reordered or duplicated"
    if seq > state.seq + 1:
        missing = seq - state.seq - 1
        return f"chain {short} jumps from {last} to seq {seq}: {missing} line(s) missing (removed or moved)"
    if prev != state.hash:
        return f"chain {short} link broken: prev does not name the chain's line before ({state.where})"
    return None


def _check_after(
    after: Any, chains: dict[str, _Chain], partial: bool, report: Report, where: str
) -> str | None:
    if after is None:
        return None
    if not isinstance(after, dict):
        return "malformed chain start link"
    target_id, target_seq, target_hash = after.get("id"), after.get("seq"), after.get("hash")
    if not isinstance(target_id, str) or type(target_seq) is not int or not isinstance(target_hash, str):
        return "malformed chain start link"
    state = chains.get(target_id)
    known = state.recent.get(target_seq) if state is not None else None
    if known is None:
        if state is not None and target_seq > state.seq:
            return (
                f"this chain starts after seq {target_seq} of chain {target_id[:8]}, which ends at "
                f"seq {state.seq} ({state.where}): lines removed"
            )
        if partial:
            report.partial_starts.append(where)
            return None
        return (
            f"this chain starts after chain {target_id[:8]} seq {target_seq}, which is not in the given "
            "files (removed, or in an earlier file: pass it first, or --partial)"
        )
    if known != target_hash:
        return f"this chain starts after chain {target_id[:8]} seq {target_seq}, whose line was altered"
    return None


def describe(report: Report) -> str:
    """A short text for the command line."""
    if report.failure is not None:
        return f"FAILED {report.failure}"
    kind = f"keyed HMAC-SHA256, key id {report.kid}" if report.keyed else "unkeyed SHA-256"
    lines = [f"OK: {report.events} event(s) in {len(report.chains)} chain(s) ({kind})"]
    if report.skipped:
        lines.append(f"  {report.skipped} line(s) skipped: not audit events")
    if report.partial_starts:
        lines.append(f"  {len(report.partial_starts)} chain start(s) not checked (--partial)")
    if not report.keyed and report.events:
        lines.append(
            "  unkeyed: proves the lines are consistent with each other, not that nobody rewrote them all; "
            "set AIRLOCK_AUDIT_CHAIN_KEY for tamper evidence"
        )
    lines.append("  not detectable from the files alone: lines cut from the end of a chain. Chain heads:")
    for chain_id, seq, where in report.heads()[:20]:
        lines.append(f"    {chain_id} seq {seq} at {where}")
    if len(report.chains) > 20:
        lines.append(f"    ... and {len(report.chains) - 20} more")
    return "\n".join(lines)


def run_verify(
    files: Sequence[str],
    *,
    key_env: str = CHAIN_KEY_ENV,
    key_file: str | None = None,
    partial: bool = False,
    strict: bool = False,
) -> int:
    """The ``airlock audit verify`` command: 0 verified, 1 broken, 2 cannot check as asked."""
    key: bytes | None
    if key_file is not None:
        try:
            with open(key_file, "rb") as file:
                raw = file.read().strip()
        except OSError as exc:
            raise ConfigurationError(f"cannot read the key file {key_file!r} ({exc.strerror})") from None
        key = load_key(raw, key_env, what="the chain key in --key-file")
    else:
        key = load_key(os.environ.get(key_env) or None, key_env, what=f"the chain key in ${key_env}")
    report = verify_files(files, key=key, partial=partial, strict=strict)
    print(describe(report), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.failure is None else report.failure.exit_code

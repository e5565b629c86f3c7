"""The hash chain that makes an audit log tamper-evident.

Every line written to one sink ends with its ``chain`` member::

    "chain":{"id":"9f2c4e1a7b3d5068","seq":41,"prev":"<hash of the line before>",
             "alg":"hmac-sha256","kid":"1a2b3c4d","hash":"<hash of this line>"}

``hash`` seals the line itself: HMAC-SHA256 under the chain key when one is
configured (``AIRLOCK_AUDIT_CHAIN_KEY``), else plain SHA-256, over the exact
bytes of the line as written, without its ``,"hash":"..."`` member. ``prev`` is
the ``hash`` of the previous line of the same chain. So changing a line breaks
its own hash; removing, inserting, duplicating or swapping lines breaks the
next ``prev`` or ``seq``; and with a key nobody without it can write a line that
passes, not even a one-line chain of their own.

A chain starts explicitly (``seq`` 0, ``prev`` null) each time a writer starts,
so several processes (workers, restarts) can share one stream and each keeps
its own chain. A file sink's new chain also names the file's last line at that
moment (``after``: its chain id, seq and hash), so a removed run of lines
between two restarts is detected too. Rotation keeps the chain going into the
next file. What a chain cannot show: lines cut from the end (nothing follows
them), and with an unkeyed chain, a whole file rewritten consistently.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from dataclasses import dataclass
from typing import Any

from airlock.audit.hashing import key_id

__all__ = [
    "ALG_HMAC",
    "ALG_SHA256",
    "ChainState",
    "LineHasher",
    "chain_member",
    "last_line",
    "link_to",
    "seal",
    "unseal",
]

ALG_SHA256 = "sha256"
ALG_HMAC = "hmac-sha256"
_HEX = frozenset(b"0123456789abcdef")
_SEAL_HEAD = b',"hash":"'
_SEAL_TAIL = b'"}}'
_SEAL_LENGTH = len(_SEAL_HEAD) + 64 + len(_SEAL_TAIL)
# Events are bounded to a few KB; a longer "last line" is not one of ours.
_TAIL_LIMIT = 256 * 1024


class LineHasher:
    """The hash sealing one line: HMAC-SHA256 under the chain key, or SHA-256 without one."""

    __slots__ = ("alg", "key", "kid")

    def __init__(self, key: bytes | None) -> None:
        self.key = key
        self.alg = ALG_HMAC if key is not None else ALG_SHA256
        self.kid = key_id(key) if key is not None else None

    def __call__(self, line: bytes) -> str:
        if self.key is not None:
            return hmac.digest(self.key, line, "sha256").hex()
        return hashlib.sha256(line).hexdigest()


@dataclass
class ChainState:
    """One sink's chain; touched only by the writer thread."""

    hasher: LineHasher
    id: str = ""
    seq: int = 0
    prev: str | None = None
    after: dict[str, Any] | None = None
    pending: str | None = None

    def restart(self, after: dict[str, Any] | None = None) -> None:
        self.id = os.urandom(8).hex()
        self.seq = 0
        self.prev = None
        self.after = after
        self.pending = None

    def fields(self) -> dict[str, Any]:
        """The ``chain`` member of the next line, before it is sealed."""
        fields: dict[str, Any] = {"id": self.id, "seq": self.seq, "prev": self.prev, "alg": self.hasher.alg}
        if self.hasher.kid is not None:
            fields["kid"] = self.hasher.kid
        if self.seq == 0 and self.after is not None:
            fields["after"] = self.after
        return fields

    def seal(self, line: str) -> str:
        """``line`` (compact JSON ending with the chain member) with the chain's ``hash`` added.

        The hash becomes ``prev`` of the next line once this one is written (``commit``).
        """
        digest = self.hasher(line.encode("utf-8"))
        self.pending = digest
        return seal(line, digest)

    def commit(self) -> None:
        if self.pending is not None:
            self.prev = self.pending
            self.pending = None
            self.seq += 1

    def discard(self) -> None:
        self.pending = None

    def rewind(self, seq: int, prev: str | None) -> None:
        """Go back to an earlier point (lines sealed after it were not written)."""
        self.seq = seq
        self.prev = prev
        self.pending = None

    @property
    def head(self) -> dict[str, Any]:
        """Where the chain stands: an anchor to keep elsewhere to detect a truncated tail."""
        return {"id": self.id, "seq": self.seq - 1, "hash": self.prev}


def last_line(path: str) -> tuple[bytes | None, bool]:
    """The last complete line of ``path`` (without its newline) and whether the file ends mid-line.

    Reads at most the last 256 KiB. ``(None, False)`` for a missing or empty file.
    """
    try:
        with open(path, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                return None, False  # a device or a pipe (/dev/full, a FIFO): nothing to link to
            size = file.seek(0, os.SEEK_END)
            start = max(0, size - _TAIL_LIMIT)
            file.seek(start)
            data = file.read(_TAIL_LIMIT)
    except FileNotFoundError:
        return None, False
    if not data:
        return None, False
    partial = not data.endswith(b"\n")
    pieces = data.split(b"\n")
    pieces.pop()  # what follows the last newline: nothing, or an unfinished line
    if start > 0 and pieces:
        pieces.pop(0)  # may be cut at the front
    return (pieces[-1] if pieces else None), partial


def seal(line: str, digest: str) -> str:
    # The chain member is the line's last member, so the line ends with "}}".
    return f'{line[:-2]},"hash":"{digest}"}}}}'


def unseal(line: bytes) -> tuple[bytes, str] | None:
    """``(the line as hashed, its hash)``, or ``None`` when the line does not end with a hash."""
    tail = line[-_SEAL_LENGTH:]
    digest = tail[len(_SEAL_HEAD) : -len(_SEAL_TAIL)]
    if not (tail.startswith(_SEAL_HEAD) and tail.endswith(_SEAL_TAIL) and _HEX.issuperset(digest)):
        return None
    if len(digest) != 64:
        return None
    return line[:-_SEAL_LENGTH] + b"}}", digest.decode("ascii")


def chain_member(line: bytes) -> dict[str, Any] | None:
    """The ``chain`` object of a JSON line, or ``None`` when the line is not JSON or has none."""
    try:
        document = json.loads(line)
    except ValueError:
        return None
    chain = document.get("chain") if isinstance(document, dict) else None
    return chain if isinstance(chain, dict) else None


def link_to(line: bytes | None) -> dict[str, Any] | None:
    """The ``after`` member naming ``line`` when it is one of our sealed events, else ``None``."""
    chain = chain_member(line) if line else None
    if chain is None:
        return None
    chain_id, seq, digest = chain.get("id"), chain.get("seq"), chain.get("hash")
    if not isinstance(chain_id, str) or type(seq) is not int or not isinstance(digest, str):
        return None
    return {"id": chain_id, "seq": seq, "hash": digest}

"""API keys: the key file, the constant-time check, key ids for logs, and the exposure rule.

A key is a shared secret, so it is never logged or compared byte by byte: each candidate is
hashed and compared with ``hmac.compare_digest`` against every key (no early exit), and logs
and metrics see only a key id, a short SHA-256 prefix that cannot be turned back into the key.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from pathlib import Path

from ..errors import MFCLIPError

__all__ = [
    "MIN_KEY_LENGTH",
    "InsecureBindError",
    "KeyFileError",
    "KeyRing",
    "check_exposure",
    "credentials",
    "is_loopback",
    "key_id",
]

#: Keys shorter than this are refused: a short key can be guessed, or recovered from its id.
MIN_KEY_LENGTH = 16


class KeyFileError(MFCLIPError, ValueError):
    """The API key file is missing, unreadable, empty or holds an unusable key."""


class InsecureBindError(MFCLIPError, RuntimeError):
    """Refusing to serve without API keys on an address other machines can reach."""


def key_id(key: str) -> str:
    """A key's id for logs and metrics: 12 hex digits of its SHA-256, not the key."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


class KeyRing:
    """The accepted API keys; :meth:`match` says which one a request sent, if any."""

    def __init__(self, keys: Iterable[str]) -> None:
        unique = list(dict.fromkeys(keys))
        if not unique:
            raise KeyFileError("no API keys given")
        for key in unique:
            if len(key) < MIN_KEY_LENGTH or any(ch.isspace() or not ch.isascii() for ch in key):
                raise KeyFileError(
                    f"API key {key_id(key)} is unusable: keys must be at least "
                    f"{MIN_KEY_LENGTH} ASCII characters without spaces (make one with "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
                )
        self._digests = [(hashlib.sha256(k.encode()).digest(), key_id(k)) for k in unique]

    @classmethod
    def from_file(cls, path: str | Path) -> KeyRing:
        """One key a line; blank lines and lines starting with ``#`` are ignored."""
        try:
            text = Path(path).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"cannot read the API key file {path}: {exc}") from None
        lines = (line.strip() for line in text.splitlines())
        keys = [line for line in lines if line and not line.startswith("#")]
        if not keys:
            raise KeyFileError(f"the API key file {path} holds no keys")
        return cls(keys)

    def __len__(self) -> int:
        return len(self._digests)

    @property
    def ids(self) -> list[str]:
        return [kid for _, kid in self._digests]

    def match(self, candidate: str | None) -> str | None:
        """The id of the key ``candidate`` equals, else None; time does not depend on which."""
        if not candidate:
            return None
        digest = hashlib.sha256(candidate.encode("utf-8", "surrogateescape")).digest()
        found = None
        for known, kid in self._digests:
            if hmac.compare_digest(digest, known) and found is None:
                found = kid
        return found


def credentials(headers: dict[bytes, bytes]) -> list[str]:
    """The keys a request offers: ``Authorization: Bearer KEY`` and ``X-API-Key: KEY``."""
    offered = []
    auth = headers.get(b"authorization", b"").decode("latin-1").strip()
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        offered.append(token.strip())
    api_key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    if api_key:
        offered.append(api_key)
    return offered


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the service on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def check_exposure(host: str, keys: KeyRing | None, insecure: bool) -> None:
    """Refuse an address others can reach without API keys, unless told ``insecure``."""
    if keys is not None or insecure or is_loopback(host):
        return
    raise InsecureBindError(
        f"refusing to serve on {host} without API keys: anyone who can reach this address "
        "could upload images and use this machine's CPU/GPU. Give --api-key-file FILE (one "
        "key a line), bind to 127.0.0.1, or pass --insecure if a proxy in front of this "
        "server already authenticates its clients"
    )

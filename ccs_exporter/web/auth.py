"""Basic auth for the exporter's endpoints: bcrypt hashes checked once, and failed logins kept cheap.

bcrypt is slow on purpose (about 60 ms at cost 10). A verified password is remembered as a keyed digest
(never in clear), so a scrape does not pay for it every time. A wrong password costs a bcrypt check, so
``FailureBackoff`` makes a client that keeps failing wait, and the server runs one check at a time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping

import bcrypt

# bcrypt's range, which the toolkit accepts whole. Each step doubles the time of a check: 14 is about 1 s
# on one core, 31 days. Above SLOW_BCRYPT_COST a warning says what a first login costs; the checks still
# run one at a time, once per distinct credential, so a flood costs at most one core.
MAX_BCRYPT_COST = 31
MIN_BCRYPT_COST = 4
SLOW_BCRYPT_COST = 14
_BCRYPT_PREFIX = re.compile(r"^\$2[abxy]\$(\d\d)\$")
_BCRYPT_HASH = re.compile(r"^\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}$")
# bcrypt reads the first 72 bytes of a password (htpasswd and Go's bcrypt do the same).
_BCRYPT_MAX_PASSWORD_BYTES = 72
_MAX_CACHED = 1000


def bcrypt_cost(value: str) -> int:
    """The cost of a bcrypt hash already checked by ``check_bcrypt_hash``."""
    return int(value.split("$")[2])


def check_bcrypt_hash(value: str) -> str:
    """``value`` when it is a bcrypt hash whose cost this server accepts; ValueError (never echoing it)."""
    prefix = _BCRYPT_PREFIX.match(value)
    if prefix is not None and not MIN_BCRYPT_COST <= int(prefix.group(1)) <= MAX_BCRYPT_COST:
        raise ValueError(
            f"bcrypt cost {int(prefix.group(1))} is outside bcrypt's {MIN_BCRYPT_COST}-{MAX_BCRYPT_COST} "
            "(each step doubles the time of a login; 10 is usual)"
        )
    if prefix is None or _BCRYPT_HASH.match(value) is None:
        raise ValueError("not a bcrypt hash: $2y$, a two-digit cost, $ and 53 characters (htpasswd -nBC 10)")
    return value


class BasicAuthChecker:
    """Checks ``user:password`` against bcrypt hashes, remembering the answers already computed.

    ``cached`` answers without bcrypt when it can; ``verify`` runs bcrypt (slow: call it off the event
    loop, one at a time). Wrong passwords are remembered too (up to a bound), so repeating one is free.
    """

    def __init__(self, users: Mapping[str, str]) -> None:
        self._users = {user: check_bcrypt_hash(hashed).encode("ascii") for user, hashed in users.items()}
        self._key = secrets.token_bytes(32)
        self._verified: set[bytes] = set()
        self._refused: set[bytes] = set()
        self._lock = threading.Lock()
        # An unknown user is compared against a hash of the highest configured cost, so a wrong user
        # costs as much as a wrong password and response times do not tell which user names exist.
        self._dummy_cost = max((int(hashed.split(b"$")[2]) for hashed in self._users.values()), default=10)
        self._dummy: bytes | None = None

    def _digest(self, user: str, password: str) -> bytes:
        return hmac.new(
            self._key, f"{user}\0{password}".encode("utf-8", "surrogatepass"), hashlib.sha256
        ).digest()

    def credential_key(self, user: str, password: str) -> bytes:
        """A keyed digest standing for this pair (never the password), e.g. to share one check of it."""
        return self._digest(user, password)

    def cached(self, user: str, password: str) -> bool | None:
        """True or False when this pair was checked before, None when only bcrypt can tell."""
        digest = self._digest(user, password)
        with self._lock:
            if digest in self._verified:
                return True
            if digest in self._refused:
                return False
        return None

    def verify(self, user: str, password: str) -> bool:
        """Run bcrypt for this pair and remember the answer."""
        hashed = self._users.get(user)
        candidate = password.encode("utf-8", "surrogatepass")[:_BCRYPT_MAX_PASSWORD_BYTES]
        try:
            ok = bcrypt.checkpw(candidate, hashed if hashed is not None else self._dummy_hash())
        except ValueError:  # e.g. a NUL byte in the password
            ok = False
        ok = ok and hashed is not None
        digest = self._digest(user, password)
        with self._lock:
            remembered = self._verified if ok else self._refused
            if len(remembered) >= _MAX_CACHED:
                remembered.clear()
            remembered.add(digest)
        return ok

    def check(self, user: str, password: str) -> bool:
        """True when the user exists and the password matches its hash (cached, else bcrypt)."""
        known = self.cached(user, password)
        return known if known is not None else self.verify(user, password)

    def _dummy_hash(self) -> bytes:
        with self._lock:
            if self._dummy is None:
                self._dummy = bcrypt.hashpw(b"unknown-user", bcrypt.gensalt(rounds=self._dummy_cost))
            return self._dummy


def client_key(address: str) -> str:
    """The unit a backoff applies to: the IPv4 address, or the /64 of an IPv6 one (one host's share)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class FailureBackoff:
    """Per-client backoff after failed logins: a few free tries, then waits doubling up to a ceiling.

    Only checks that need bcrypt count, and a client that succeeds is forgotten; a client that stops
    failing is forgotten after ``forget_seconds``. At most ``max_clients`` are tracked (the oldest go).
    """

    def __init__(
        self,
        *,
        free_failures: int = 5,
        first_wait: float = 1.0,
        max_wait: float = 60.0,
        forget_seconds: float = 600.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._free = free_failures
        self._first = first_wait
        self._max = max_wait
        self._forget = forget_seconds
        self._max_clients = max_clients
        self._clock = clock
        self._clients: dict[str, tuple[int, float, float]] = {}  # key -> (failures, last failure, until)
        self._lock = threading.Lock()

    def wait_seconds(self, client: str) -> float:
        """How long ``client`` must still wait before its next password is checked (0: now)."""
        key, now = client_key(client), self._clock()
        with self._lock:
            entry = self._clients.get(key)
            if entry is None:
                return 0.0
            _, last, until = entry
            if now - last > self._forget:
                del self._clients[key]
                return 0.0
            return max(0.0, until - now)

    def failed(self, client: str) -> None:
        """Count a failed login of ``client``."""
        key, now = client_key(client), self._clock()
        with self._lock:
            failures, last, _ = self._clients.pop(key, (0, now, now))
            if now - last > self._forget:
                failures = 0
            failures += 1
            extra = failures - self._free
            until = now + min(self._max, self._first * 2 ** min(extra - 1, 30)) if extra > 0 else now
            self._clients[key] = (failures, now, until)  # re-inserted last: the dict is oldest-first
            while len(self._clients) > self._max_clients:
                del self._clients[next(iter(self._clients))]

    def succeeded(self, client: str) -> None:
        """Forget ``client``'s failures."""
        with self._lock:
            self._clients.pop(client_key(client), None)

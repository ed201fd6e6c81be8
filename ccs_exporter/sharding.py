"""Which replica watches which job: jobs split over shards by a stable hash of their GUID.

The kube-state-metrics model: every replica is told its shard (``INDEX/TOTAL``, or the StatefulSet pod
ordinal in its host name) and keeps the jobs whose hash falls on it; no replica talks to another. A job
belongs to shard ``stable_hash(job_id) % total``, where ``stable_hash`` is the first 8 bytes of the
SHA-256 of the GUID's canonical text (lower case, no braces, no spaces), read as a big-endian unsigned
integer. It is the same in every process, machine and Python version, unlike ``hash()``, which Python
salts per process. Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

# The shard alert sums 2^ordinal over the replicas, exact in float64 well past this; more shards than
# this would also mean hundreds of thousands of jobs, far beyond any CCS.
MAX_TOTAL_SHARDS = 50
_SHARD_RE = re.compile(r"^\s*(\d{1,9})\s*/\s*(\d{1,9})\s*$", re.ASCII)
# A StatefulSet pod is <statefulset name>-<ordinal>; its host name is the pod name (or, with
# setHostnameAsFQDN, the pod name followed by the service's domain).
_ORDINAL_RE = re.compile(r"-(\d{1,9})$", re.ASCII)


def canonical_job_id(job_id: str) -> str:
    """The text a job id is hashed as: lower case, without braces or surrounding spaces."""
    return job_id.strip().removeprefix("{").removesuffix("}").strip().lower()


def stable_hash(job_id: str) -> int:
    """A 64-bit hash of the job id, the same everywhere: SHA-256 of the canonical id, first 8 bytes."""
    digest = hashlib.sha256(canonical_job_id(job_id).encode("ascii", "replace")).digest()
    return int.from_bytes(digest[:8], "big")


def shard_of(job_id: str, total: int) -> int:
    """The shard (0 to ``total - 1``) a job belongs to."""
    if total < 1:
        raise ValueError("the total number of shards must be 1 or more")
    return stable_hash(job_id) % total


@dataclass(frozen=True, slots=True)
class Shard:
    """This replica's place: shard ``index`` (0-based) of ``total``. ``Shard(0, 1)`` is not sharded."""

    index: int
    total: int

    def __post_init__(self) -> None:
        if not 1 <= self.total <= MAX_TOTAL_SHARDS:
            raise ValueError(f"the total must be 1-{MAX_TOTAL_SHARDS}, not {self.total}")
        if not 0 <= self.index < self.total:
            raise ValueError(
                f"index {self.index} is not below the total {self.total} "
                f"(indexes are 0-based: 0 to {self.total - 1})"
            )

    @property
    def sharded(self) -> bool:
        """True when the jobs are split over more than one replica."""
        return self.total > 1

    def owns(self, job_id: str) -> bool:
        """True when this replica watches the job (always, when not sharded)."""
        return self.total == 1 or shard_of(job_id, self.total) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.total}"


UNSHARDED = Shard(0, 1)


def parse_shard(text: str) -> Shard:
    """``"1/3"`` -> ``Shard(1, 3)``; ValueError saying what is wrong with anything else."""
    match = _SHARD_RE.match(text)
    if match is None:
        raise ValueError("must be INDEX/TOTAL with a 0-based index, e.g. 1/3")
    return Shard(int(match.group(1)), int(match.group(2)))


def ordinal_from_hostname(hostname: str) -> int:
    """The StatefulSet pod ordinal at the end of a host name: ``ccs-exporter-2`` -> 2.

    Only the first label of a fully qualified name counts (``ccs-exporter-2.ccs.monitoring.svc``).
    ValueError when it does not end in ``-<number>``.
    """
    first_label = hostname.strip().split(".", 1)[0]
    match = _ORDINAL_RE.search(first_label)
    if match is None:
        raise ValueError(
            f"host name {first_label!r} does not end in a StatefulSet pod ordinal (<name>-0, <name>-1, ...)"
        )
    return int(match.group(1))


def resolve_shard(
    shard: str | None, from_hostname: bool, total: int | None, env_name: Callable[[str], str]
) -> Shard:
    """The shard of this replica the settings describe (``env_name`` names a setting's variable).

    ValueError naming the settings when they contradict each other.
    """
    shard_name = f"{env_name('shard')} (shard)"
    hostname_name = f"{env_name('shard_from_hostname')} (shard_from_hostname)"
    total_name = f"{env_name('total_shards')} (total_shards)"
    if shard is not None:
        if from_hostname:
            raise ValueError(f"{shard_name} and {hostname_name} are both set: give one or the other")
        if total is not None:
            raise ValueError(
                f"{total_name} goes with {hostname_name}; {shard_name} = {shard!r} already holds the total"
            )
        return parse_shard(shard)
    if not from_hostname:
        if total is not None:
            raise ValueError(
                f"{total_name} = {total} is read only with {env_name('shard_from_hostname')}=true "
                f"(or set {shard_name} = INDEX/TOTAL)"
            )
        return UNSHARDED
    if total is None:
        raise ValueError(f"{hostname_name} needs {total_name}: the number of StatefulSet replicas")
    hostname = socket.gethostname()
    try:
        ordinal = ordinal_from_hostname(hostname)
    except ValueError as exc:
        raise ValueError(f"{hostname_name}: {exc}") from None
    if ordinal >= total:
        raise ValueError(
            f"{hostname_name}: the pod ordinal {ordinal} of host name {hostname!r} is not below "
            f"{total_name} = {total} (replicas and total must match; ordinals start at 0)"
        )
    return Shard(ordinal, total)

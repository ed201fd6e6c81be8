"""The two formats /metrics speaks, and metric families rendered once for both.

A scraper gets Prometheus text 0.0.4 unless its ``Accept`` header prefers OpenMetrics 1.0 (or 0.0.1),
which then ends in ``# EOF``. The two differ only in a family's header lines (a counter's family is
``x`` in OpenMetrics and ``x_total`` in text, an info family ``x`` and ``x_info``; HELP escapes quotes),
so a ``RenderedFamily`` keeps each header once per format, its sample lines once for both, and each of
them as a gzip member: a scrape in either format, compressed or not, whole or filtered by ``name[]``, is
joined from ready bytes. Concatenated gzip members are one valid gzip stream.

The job families (nearly all of the bytes: 22 MB plain, 4.4 MB gzip at 10,000 jobs) hold their sample
parts as gzip members only (``deflated``): Prometheus asks for gzip, and a plain copy is made only when
a scraper asks for plain (``Exposition.plain``), with parts unchanged since the last copy used again
(``Inflations``).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import gzip
import threading
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple, cast

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_VERSIONS = ("1.0.0", "0.0.1")
EOF = b"# EOF\n"
EOF_GZIP = gzip.compress(EOF, compresslevel=1, mtime=0)
# prometheus_client's OpenMetrics writer (untyped there).
_generate_openmetrics = cast(Callable[[Collector], bytes], openmetrics.generate_latest)
# name[] parameters one request may carry; the exposition has about fifty families.
MAX_SELECTED_NAMES = 100


class Format(enum.Enum):
    """An exposition format."""

    TEXT = "text"
    OPENMETRICS = "openmetrics"


class Negotiated(NamedTuple):
    """The format a scraper gets and the Content-Type that says so."""

    format: Format
    content_type: str


TEXT = Negotiated(Format.TEXT, TEXT_CONTENT_TYPE)


# OpenMetrics' ``escaping`` values (how names outside the legacy character set are written); every name
# here is in that set, so the text is the same whichever is asked for.
ESCAPING_SCHEMES = ("allow-utf-8", "underscores", "dots", "values")


def negotiate(accept: str) -> Negotiated:
    """The format ``Accept`` prefers: OpenMetrics when it ranks highest, else text 0.0.4.

    OpenMetrics is ``application/openmetrics-text`` with no version, 1.0.0 or 0.0.1; ``text/plain`` of
    any version and wildcards mean text. The highest q-value wins (q=0 refuses), ties go to the range
    listed first; anything else, or nothing acceptable, gets text 0.0.4, as client_python does. OpenMetrics
    1.0.0 says its ``escaping`` in the Content-Type, as client_python writes it: the one asked for, or
    ``underscores`` when none or an unknown one was.
    """
    best: tuple[float, Negotiated] | None = None
    for media_range in accept.split(","):
        media_type, *params = (part.strip() for part in media_range.split(";"))
        options = {key.strip().lower(): value.strip() for key, _, value in (p.partition("=") for p in params)}
        offer = _offer(media_type.lower(), options.get("version"), options.get("escaping"))
        quality = _quality(options.get("q", "1"))
        if offer is not None and quality > 0 and (best is None or quality > best[0]):
            best = (quality, offer)
    return best[1] if best is not None else TEXT


def _offer(media_type: str, version: str | None, escaping: str | None) -> Negotiated | None:
    if media_type == "application/openmetrics-text":
        version = version or OPENMETRICS_VERSIONS[0]
        if version not in OPENMETRICS_VERSIONS:
            return None
        content_type = f"application/openmetrics-text; version={version}; charset=utf-8"
        if escaping is not None and version == "1.0.0":
            content_type += f"; escaping={escaping if escaping in ESCAPING_SCHEMES else 'underscores'}"
        return Negotiated(Format.OPENMETRICS, content_type)
    if media_type in ("text/plain", "text/*", "*/*"):
        return TEXT
    return None


def _quality(text: str) -> float:
    try:
        quality = float(text)
    except ValueError:
        return 0.0
    return quality if 0.0 <= quality <= 1.0 else 0.0  # NaN fails both comparisons


_SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "info": ("_info",),
}


def sample_names(name: str, kind: str) -> frozenset[str]:
    """The names a family's samples can have (``x_bucket``, ``x_count``...), as client_python lists them."""
    return frozenset(name + suffix for suffix in _SAMPLE_SUFFIXES.get(kind, ("",)))


def family_names(name: str, kind: str) -> frozenset[str]:
    """The names that select a family in ``name[]``: its OpenMetrics name and its text name.

    ``name`` is the OpenMetrics family name (prometheus_client's ``Metric.name``): a counter is also
    selected by its ``_total`` sample name, an info family by its ``_info`` one.
    """
    suffix = {"counter": "_total", "info": "_info"}.get(kind, "")
    return frozenset({name, name + suffix})


@dataclass(frozen=True)
class RenderedFamily:
    """One metric family, ready in both formats: plain parts and gzip members per format.

    The sample parts are the same objects in both formats (never copied), and so is their gzip member.
    A ``deflated`` family holds its samples as gzip members only: ``text`` and ``openmetrics`` hold its
    header, and ``inflated`` gives the family with its samples plain.
    """

    names: frozenset[str]
    text: tuple[bytes, ...]
    openmetrics: tuple[bytes, ...]
    text_gzip: tuple[bytes, ...]
    openmetrics_gzip: tuple[bytes, ...]
    samples: frozenset[str] = frozenset()
    deflated: bool = False

    @classmethod
    def of_samples(
        cls, name: str, kind: str, documentation: str, samples: tuple[bytes, ...]
    ) -> RenderedFamily:
        """A family written directly: ``name`` (OpenMetrics) of ``kind`` gauge or info, sample parts."""
        samples_gzip = (gzip_member(samples),) if any(samples) else ()
        return cls.of_parts(name, kind, documentation, samples, samples_gzip)

    @classmethod
    def of_parts(
        cls, name: str, kind: str, documentation: str, samples: tuple[bytes, ...], members: tuple[bytes, ...]
    ) -> RenderedFamily:
        """Like ``of_samples``, with the samples already compressed: ``members`` are their gzip members."""
        text_name = name + "_info" if kind == "info" else name
        text_header = f"# HELP {text_name} {_escape_help(documentation)}\n# TYPE {text_name} gauge\n"
        openmetrics_help = _escape_help(documentation).replace('"', '\\"')
        openmetrics_header = f"# HELP {name} {openmetrics_help}\n# TYPE {name} {kind}\n"
        return cls(
            family_names(name, kind),
            (text_header.encode(), *samples),
            (openmetrics_header.encode(), *samples),
            (_header_member(text_header), *members),
            (_header_member(openmetrics_header), *members),
            sample_names(name, kind),
        )

    @classmethod
    def of_deflated(
        cls, name: str, kind: str, documentation: str, members: tuple[bytes, ...]
    ) -> RenderedFamily:
        """Like ``of_parts``, the samples held only as their gzip ``members`` (plain when inflated)."""
        family = cls.of_parts(name, kind, documentation, (), members)
        return dataclasses.replace(family, deflated=bool(members))

    @property
    def members(self) -> tuple[bytes, ...]:
        """The gzip members of the samples (shared by both formats; the header's member apart)."""
        return self.text_gzip[1:]

    def inflated(self, samples: tuple[bytes, ...]) -> RenderedFamily:
        """This family with ``samples``, its members inflated, as its plain sample parts."""
        return dataclasses.replace(
            self,
            text=(self.text[0], *samples),
            openmetrics=(self.openmetrics[0], *samples),
            deflated=False,
        )

    @classmethod
    def of_metric(cls, metric: Metric) -> RenderedFamily:
        """A prometheus_client family, rendered by prometheus_client in each format."""
        text = render_metrics((metric,), Format.TEXT)
        openmetrics = render_metrics((metric,), Format.OPENMETRICS)
        return cls(
            family_names(metric.name, metric.type),
            (text,),
            (openmetrics,),
            (gzip_member((text,)),),
            (gzip_member((openmetrics,)),),
            sample_names(metric.name, metric.type),
        )

    def parts(self, fmt: Format, gzipped: bool) -> tuple[bytes, ...]:
        """The family's bytes in ``fmt``: plain parts (a deflated family's inflated for this call), or gzip
        members."""
        if self.deflated and not gzipped:
            return self.inflated(tuple(map(inflate, self.members))).parts(fmt, gzipped)
        if fmt is Format.OPENMETRICS:
            return self.openmetrics_gzip if gzipped else self.openmetrics
        return self.text_gzip if gzipped else self.text

    def selected_parts(self, fmt: Format, gzipped: bool, names: Collection[str]) -> tuple[bytes, ...]:
        """What ``name[]`` selects of this family: all of it when ``names`` holds its name, only the
        samples named when it holds sample names (``x_count``: client_python's meaning), else nothing."""
        if not self.names.isdisjoint(names):
            return self.parts(fmt, gzipped)
        wanted = self.samples.intersection(names)
        if not wanted:
            return ()
        kept = _samples_named(b"".join(self.parts(fmt, gzipped=False)), wanted, self.names | wanted)
        return (gzip_member((kept,)),) if gzipped else (kept,)


def _samples_named(family: bytes, names: frozenset[str], headers: frozenset[str]) -> bytes:
    """``family``'s HELP/TYPE/UNIT lines of the ``headers`` names, and its samples named in ``names``."""
    samples = tuple(name.encode() + end for name in names for end in (b"{", b" "))
    comments = tuple(f"# {kind} {name} ".encode() for name in headers for kind in ("HELP", "TYPE", "UNIT"))
    return b"".join(
        line
        for line in family.splitlines(keepends=True)
        if line.startswith(samples) or line.startswith(comments)
    )


def _escape_help(documentation: str) -> str:
    return documentation.replace("\\", "\\\\").replace("\n", "\\n")


@functools.lru_cache(maxsize=256)
def _header_member(header: str) -> bytes:
    """A family header's gzip member: the same at every publish, compressed once."""
    return gzip_member((header.encode(),))


def gzip_member(parts: Iterable[bytes]) -> bytes:
    """One gzip member of the concatenated ``parts`` (level 1: deflate is fast and releases the GIL)."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)  # 31: a gzip stream
    return b"".join([*(compressor.compress(part) for part in parts), compressor.flush()])


def inflate(member: bytes) -> bytes:
    """The bytes one gzip member holds."""
    return zlib.decompress(member, 31)


class Inflations:
    """The plain copies of gzip members made for the last plain copy of an exposition, by member.

    Shared by the expositions of one renderer: a part unchanged since the last copy is the same member
    object, so at rest a plain copy inflates only the parts that changed, and the plain bytes are shared
    from copy to copy instead of held twice. ``clear`` lets them go once nobody asks for plain.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plain: dict[int, tuple[bytes, bytes]] = {}  # id(member) -> (member, its plain bytes)

    def inflate(self, families: Iterable[RenderedFamily]) -> tuple[RenderedFamily, ...]:
        """``families`` with every deflated one inflated; only what this copy used is kept."""
        families = tuple(families)
        wanted = {id(member) for family in families if family.deflated for member in family.members}
        with self._lock:
            # The copies of parts that changed go now, not after the new copy is made: at 10,000 jobs,
            # when every job changed, 22 MB less held at once.
            before = {key: known for key, known in self._plain.items() if key in wanted}
            self._plain = used = {}
            result = []
            for family in families:
                if not family.deflated:
                    result.append(family)
                    continue
                samples = []
                for member in family.members:
                    known = before.get(id(member))
                    if known is None or known[0] is not member:  # the member holds its id while kept
                        known = (member, inflate(member))
                    used[id(member)] = known
                    samples.append(known[1])
                result.append(family.inflated(tuple(samples)))
            return tuple(result)

    def clear(self) -> None:
        """Let every plain copy go (the next plain copy inflates everything)."""
        with self._lock:
            self._plain = {}


class _PlainCopy:
    """An exposition's plain copy, made once however many scrapes ask for it at the same time."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.families: tuple[RenderedFamily, ...] | None = None


@dataclass(frozen=True)
class Exposition:
    """Families rendered once (at the end of a poll cycle), served in any format and selection.

    The server writes the parts with gathered writes; keeping them apart spares a copy of the whole
    text (20 MB at 10,000 jobs) at every publish and every scrape. A plain body of deflated families is
    served from the exposition's plain copy (``plain``), made on the first plain scrape or at publish.
    """

    families: tuple[RenderedFamily, ...]
    inflations: Inflations = field(default_factory=Inflations, compare=False, repr=False)
    _plain: _PlainCopy = field(default_factory=_PlainCopy, compare=False, repr=False)

    @property
    def deflated(self) -> bool:
        """True when some family holds its samples as gzip members only."""
        return any(family.deflated for family in self.families)

    @property
    def plain_ready(self) -> bool:
        """True when a plain body costs no inflating: nothing deflated, or the plain copy made."""
        return self._plain.families is not None or not self.deflated

    def plain(self) -> tuple[RenderedFamily, ...]:
        """The families with every sample part plain: made on the first call (the others wait for it)."""
        copy = self._plain
        if copy.families is None:
            with copy.lock:
                if copy.families is None:
                    copy.families = self.inflations.inflate(self.families) if self.deflated else self.families
        return copy.families

    def body(
        self, fmt: Format = Format.TEXT, *, gzipped: bool = False, names: Collection[str] | None = None
    ) -> tuple[bytes, ...]:
        """The families ``names`` selects (all when None) in ``fmt``, without the OpenMetrics ``# EOF``.

        Plain and whole, from the plain copy (inflating the deflated families on the first call); plain
        and selected, from the plain copy when it is made, else inflating only the families selected (the
        copy is not made for them). The server asks for plain bodies off its event loop while
        ``plain_ready`` is False.
        """
        if gzipped:
            families = self.families
        elif names is None:
            families = self.plain()
        else:
            families = self._plain.families or self.families
        if names is None:
            return tuple(part for family in families for part in family.parts(fmt, gzipped))
        return tuple(part for family in families for part in family.selected_parts(fmt, gzipped, names))

    def text(self) -> bytes:
        """The whole text exposition, joined (tests and tools; the server never joins it)."""
        return b"".join(self.body())


class _Families(Collector):
    def __init__(self, metrics: Iterable[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield from self._metrics


def render_metrics(metrics: Iterable[Metric], fmt: Format) -> bytes:
    """prometheus_client families in ``fmt`` (OpenMetrics without its ``# EOF``: more may follow)."""
    if fmt is Format.OPENMETRICS:
        return _generate_openmetrics(_Families(metrics)).removesuffix(EOF)
    return generate_latest(_Families(metrics))


def selected(metrics: Iterable[Metric], names: Collection[str] | None) -> Iterator[Metric]:
    """The families among ``metrics`` that ``names`` selects (all when None); a family selected by sample
    names (``x_count``) keeps only those samples, as client_python's restricted registry does."""
    for metric in metrics:
        if names is None or not family_names(metric.name, metric.type).isdisjoint(names):
            yield metric
            continue
        samples = [sample for sample in metric.samples if sample.name in names]
        if samples:
            restricted = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            restricted.samples = samples
            yield restricted

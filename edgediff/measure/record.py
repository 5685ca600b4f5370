"""One row of an `edgediff bench` report: one target (model × backend × precision × device) measured on this host,
or skipped with the reason it cannot run here."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass(frozen=True, kw_only=True)
class Record:
    """Latency, memory, size and quality of one target; every measured field is None on a skipped row."""

    backend: str
    precision: str
    device: str
    model: str | None
    path: str
    batch: int
    threads: int | None = None  # what the runtime reports it uses (the request where it cannot say)
    threads_requested: int | None = None
    cpu_util: float | None = None  # CPU seconds / wall seconds over the steady loop: cores kept busy
    load_ms: float | None = None
    first_ms: float | None = None
    step: dict | None = None  # ms per network call: p50, p90, mean, ... (None when skipped)
    image_ms: float | None = None  # one batch end to end; None where only the network ran (a phone)
    sampler_overhead_ms: float | None = None
    sampler_overhead_frac: float | None = None
    calls_per_image: float | None = None
    size_mb: float = 0.0
    peak_rss_mb: float | None = None  # high-water RSS of the measuring process; None when measured in-process
    parity_db: float | None = None
    fid_proxy: float | None = None
    fid_floor: float | None = None
    fid_n: int | None = None
    gflops_per_step: float | None = None
    gflops_per_s: float | None = None
    sampler: dict = field(default_factory=dict)  # name, steps, guidance of the image column
    host: dict = field(default_factory=dict)
    isolated: bool = False
    skipped: str | None = None  # why this target was not measured here, e.g. "needs macOS"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Record:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def label(self) -> str:
        """How plots and tables name the row: model, backend, precision, device, batch."""
        return f"{self.model or '–'}\n{self.backend} {self.precision} {self.device} b{self.batch}"

"""Where the machine's CPU goes during a benchmark run, by part of the local stack.

Everything the benchmarks run shares the machine's cores: the source and warehouse PostgreSQL,
the local DMS, moto, the Data API stand-in, the function environments, the workload and the
benchmark itself. ``CpuUsage.of(before, after)`` turns two ``snapshot()``s of ``/proc`` (proc(5):
``/proc/stat``'s ``cpu`` line and each process's ``utime`` + ``stime``) into cores busy, in
all and per part, so a latency figure can say whether the machine was saturated and by whom.
A process that ended between the snapshots is not counted; one that started is counted from 0.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")

# Parts of the local stack by what their command line holds (first match wins).
PARTS: tuple[tuple[str, str], ...] = (
    ("local.dms", "local DMS"),
    ("local.workload", "workload"),
    ("local.redshift_data_api", "Data API stand-in"),
    ("local.moto_server", "moto (Kinesis, S3, SQS)"),
    ("postgres: walsender", "PostgreSQL walsender (decoding)"),
    ("postgres", "PostgreSQL"),
)


def part_of(command: str, pid: int, bench_pid: int, parent: int) -> str | None:
    """The part a process belongs to; None for processes outside the benchmark."""
    for marker, part in PARTS:
        if marker in command:
            return part
    if pid == bench_pid:
        return "benchmark (pollers, sampler)"
    if parent == bench_pid:
        return "function environments"
    return None


@dataclass(frozen=True)
class Snapshot:
    busy_ticks: int
    total_ticks: int
    ticks_by_pid: dict[int, tuple[str, int]]  # pid -> (part, utime + stime)


def _machine_ticks() -> tuple[int, int]:
    fields = [int(v) for v in (PROC / "stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    return total - idle, total


def _process(pid: int) -> tuple[str, int, int] | None:
    """(command line, parent pid, utime + stime) of ``pid``; None once it has gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        command = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
    return command or stat[stat.index("(") + 1:stat.rindex(")")], int(fields[1]), \
        int(fields[11]) + int(fields[12])


def snapshot(classify: Callable[[str, int, int, int], str | None] = part_of) -> Snapshot:
    bench_pid = os.getpid()
    by_pid: dict[int, tuple[str, int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        process = _process(int(entry.name))
        if process is None:
            continue
        command, parent, ticks = process
        part = classify(command, int(entry.name), bench_pid, parent)
        if part is not None:
            by_pid[int(entry.name)] = (part, ticks)
    busy, total = _machine_ticks()
    return Snapshot(busy, total, by_pid)


@dataclass(frozen=True)
class CpuUsage:
    cores: int
    busy: float  # cores busy on average, of ``cores``
    by_part: dict[str, float]  # cores busy per part, largest first

    @classmethod
    def of(cls, before: Snapshot, after: Snapshot, seconds: float) -> CpuUsage:
        """The usage between two snapshots ``seconds`` apart."""
        cores = os.cpu_count() or 1
        total = max(after.total_ticks - before.total_ticks, 1)
        busy = (after.busy_ticks - before.busy_ticks) / total * cores
        hertz = os.sysconf("SC_CLK_TCK")
        parts: dict[str, float] = {}
        for pid, (part, ticks) in after.ticks_by_pid.items():
            earlier = before.ticks_by_pid.get(pid, (part, 0))[1]
            parts[part] = parts.get(part, 0.0) + (ticks - earlier) / hertz / seconds
        return cls(cores, busy, dict(sorted(parts.items(), key=lambda p: -p[1])))

    def line(self) -> str:
        return (f"CPU: {self.busy:.2f} of {self.cores} cores busy; "
                + ", ".join(f"{part} {cores:.2f}" for part, cores in self.by_part.items()))

"""Where a process spends its time while it is measured: py-spy attached to it from outside.

A benchmark that supports `--profile` wraps the part it measures in

    with PySpy(agent.process.pid, "bench_auth-member") as spy:
        ...measure...
    document["profile"] = spy.summary_path  # str, or None when py-spy could not record

What it records, and what it does not:

- `py-spy record --gil --nonblocking --format raw` samples the Python stack of the thread that
  holds the GIL in that one process (not its children: an agent's etcd member is not in it)
  `rate` times a second until the block ends (py-spy gets SIGINT and writes its file). Only the
  GIL holder is sampled, so the profile shows where the process spent CPU running Python, not
  where its threads waited (network, etcd, an idle thread pool), and not time in C code that
  released the GIL (argon2, TLS). Non-blocking: the process is not paused for a sample, so it
  runs at nearly its normal speed, at the price of an occasional torn stack. Still, bench.sh
  profiles in a separate re-run and reports the numbers of the run without the profiler.
- Saved under bench/results/profiles/: `<name>-<UTC time>.raw.txt` (collapsed stacks, one line
  per distinct stack with its sample count: the input of flamegraph tools) and
  `<name>-<UTC time>.txt`, a summary of it: the functions with the most samples on top of the
  stack (their own time), and cnm's own functions anywhere on it (with what they call), as %
  of all samples.
- Needs py-spy (`pip install -e '.[bench]'`) and the right to ptrace the process (root, or the
  same user with kernel.yama.ptrace_scope 0). Without either, the block still runs, a line
  on stderr says why there is no profile, and `summary_path` is None.
"""

from __future__ import annotations

import datetime
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import TracebackType

PROFILE_DIR = Path(__file__).resolve().parent / "results" / "profiles"
TOP = 15


def summarize(raw: str, top: int = TOP) -> str:
    """A text summary of collapsed stacks (`frame;frame;frame count` per line)."""
    own: Counter[str] = Counter()
    ours: Counter[str] = Counter()  # cnm's functions, with what they call
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if "(cnm/" in frame:
                ours[frame] += count
    if not total:
        return "no samples (the process used no CPU while it was recorded, or py-spy failed)\n"
    lines = [f"{total} samples; % of samples, own time (the function itself on top):"]
    lines += [f"{100 * n / total:6.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "% of samples, cnm's functions with what they call:"]
    lines += [f"{100 * n / total:6.1f}%  {frame}" for frame, n in ours.most_common(top)]
    return "\n".join(lines) + "\n"


class PySpy:
    """Record one process with py-spy for the duration of a `with` block."""

    def __init__(
        self, pid: int, name: str, *, rate: int = 100, directory: Path = PROFILE_DIR
    ) -> None:
        self.pid = pid
        self.rate = rate
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        self.raw_path = directory / f"{name}-{stamp}.raw.txt"
        self.summary_path: str | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PySpy:
        binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(binary).exists():
            print("profile: py-spy is not installed (pip install -e '.[bench]')", file=sys.stderr)
            return self
        self.raw_path.parent.mkdir(parents=True, exist_ok=True)
        command = [binary, "record", "--pid", str(self.pid), "--rate", str(self.rate)]
        command += ["--gil", "--nonblocking"]
        command += ["--format", "raw", "--output", str(self.raw_path)]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        process = self._process
        if process is None:
            return
        # SIGINT makes py-spy stop sampling and write its file, as Ctrl-C would.
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            _, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        if not self.raw_path.is_file():
            reason = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            print(f"profile: py-spy recorded nothing: {reason[0]}", file=sys.stderr)
            return
        summary = self.raw_path.with_name(self.raw_path.name.replace(".raw.txt", ".txt"))
        summary.write_text(
            f"py-spy record --pid {self.pid} --rate {self.rate} --gil --nonblocking; "
            f"raw stacks: {self.raw_path.name}\n" + summarize(self.raw_path.read_text())
        )
        self.summary_path = _relative(summary)
        print(f"profile: {self.summary_path}")


def _relative(path: Path) -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return str(path)


def _stamped(name: str, directory: Path) -> Path:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{name}-{stamp}.txt"


def memory_map(pid: int, name: str, *, top: int = 12, directory: Path = PROFILE_DIR) -> str | None:
    """Where a process's resident memory is, from /proc/<pid>/smaps: anonymous (Python objects,
    the malloc heap) against file-backed (shared libraries and extension modules, counted
    once mapped and touched), and the mappings holding the most. The path of the summary, or
    None when the process is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return None
    by_mapping: Counter[str] = Counter()
    anonymous = 0
    mapping = "[anon]"
    for line in text.splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and not fields[0].endswith(":"):
            mapping = fields[5] if len(fields) > 5 else "[anon]"
        elif fields[:1] == ["Rss:"]:
            by_mapping[mapping] += int(fields[1])
        elif fields[:1] == ["Anonymous:"]:
            anonymous += int(fields[1])
    total = sum(by_mapping.values())
    lines = [
        f"/proc/{pid}/smaps: resident {total / 1024:.1f} MiB = anonymous {anonymous / 1024:.1f} "
        f"MiB + file-backed {(total - anonymous) / 1024:.1f} MiB; the largest mappings:",
    ]
    lines += [f"{kib / 1024:7.1f} MiB  {where}" for where, kib in by_mapping.most_common(top)]
    path = _stamped(name, directory)
    path.write_text("\n".join(lines) + "\n")
    return _relative(path)


def counters_text(
    title: str, before: dict[str, float], after: dict[str, float], seconds: float, *, top: int = 20
) -> str:
    """A process's own counters (e.g. etcd's Prometheus metrics) as rates over a window, the
    fastest first."""
    rates = {
        key: (value - before.get(key, 0.0)) / seconds
        for key, value in after.items()
        if key.endswith("_total") or "_total{" in key
    }
    busiest = sorted(((rate, key) for key, rate in rates.items() if rate > 0), reverse=True)
    lines = [f"{title}; per second over {seconds:.0f} s:"]
    lines += [f"{rate:12.2f}/s  {key}" for rate, key in busiest[:top]]
    return "\n".join(lines)


def text_summary(name: str, text: str, *, directory: Path = PROFILE_DIR) -> str:
    """A benchmark's own account of where the time went (e.g. a phase breakdown from the
    agents' logs), kept as a summary like the others; its path."""
    path = _stamped(name, directory)
    path.write_text(text.rstrip("\n") + "\n")
    return _relative(path)

"""How every benchmark measures: a child process's wall time and peak memory, the machine it ran
on and its load. One method for each, so a fix lands once.

Peak RSS is the child's ru_maxrss as its own parent sees it in wait4, with one twist: the child
is started by a small launcher (`python -S`, ~10 MB) rather than by the benchmark. Linux carries
ru_maxrss across fork/vfork + exec: the new program starts at the resident size of the process
that spawned it, so a child spawned by a benchmark holding TensorFlow and data reads that
benchmark's size (a `python -c pass` spawned by an 800 MB parent reports 790 MiB; spawned by the
launcher, 13 MiB). Through the launcher the number is exact (the kernel's high-water mark, no
polling gaps), with a floor of the launcher's ~10-15 MB that no Python program worth measuring
stays under. tests/test_benchmarks.py checks both facts with a child that allocates 300 MB.

Wall time is taken by the launcher around spawn and wait4; every output line is time-stamped on
the same monotonic clock, so phases of a run (start-up, epochs, wind-down) can be read off it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Runs in its own `python -S` process: spawns the command, waits, reports on file descriptor argv[1].
# CLOCK_MONOTONIC (time.monotonic) is system-wide on Linux, so the parent's line stamps compare.
_LAUNCHER = """\
import os, sys, time
fd = int(sys.argv[1])
os.set_inheritable(fd, False)
start = time.monotonic()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
end = time.monotonic()
os.write(fd, ("%r %r %d %d" % (start, end, os.waitstatus_to_exitcode(status), usage.ru_maxrss)).encode())
"""


@dataclasses.dataclass
class Measured:
    """One finished command: wall seconds from spawn to exit, peak resident set, exit code and its
    output (stdout and stderr together) as (seconds since spawn, line) pairs."""

    command: list[str]
    seconds: float
    peak_rss_bytes: int
    exit_code: int
    lines: list[tuple[float, str]]

    @property
    def output(self) -> str:
        return "".join(line for _, line in self.lines)

    def tail(self, chars: int = 2000) -> str:
        return self.output[-chars:]

    def json_line(self) -> dict:
        """The last output line that is a JSON object: how a child reports its numbers (library
        warnings printed around it are skipped)."""
        for _, line in reversed(self.lines):
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"{' '.join(self.command[:5])} ... printed no JSON line:\n{self.tail()}")

    def first_line_time(self, prefix: str) -> float | None:
        """Seconds from spawn to the first output line that starts with prefix (None: no such line)."""
        return next((t for t, line in self.lines if line.startswith(prefix)), None)


def run_measured(cmd: list[str], *, env: dict | None = None, cwd=None, check: bool = True) -> Measured:
    """Run cmd to completion in a fresh process; its wall time, peak RSS, exit code and output.

    check: raise RuntimeError (with the output's tail) when the command fails.
    """
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, str(write_fd), *map(str, cmd)],
                                env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                pass_fds=(write_fd,))
    finally:
        os.close(write_fd)
    stamped = []
    for raw in proc.stdout:
        stamped.append((time.monotonic(), raw.decode("utf-8", errors="replace")))
    proc.wait()
    with os.fdopen(read_fd, "rb") as report:
        fields = report.read().decode().split()
    if proc.returncode != 0 or len(fields) != 4:
        text = "".join(line for _, line in stamped)[-2000:]
        raise RuntimeError(f"could not start {cmd[0]} (launcher exit code {proc.returncode}):\n{text}")
    start, end = float(fields[0]), float(fields[1])
    # a line is stamped when this process reads it, which on a busy machine can be after the child
    # exited: every line was written before the end, so a later stamp is this reader's lag
    result = Measured(command=[str(c) for c in cmd], seconds=end - start, peak_rss_bytes=int(fields[3]) * 1024,
                      exit_code=int(fields[2]), lines=[(min(t, end) - start, line) for t, line in stamped])
    if check and result.exit_code != 0:
        raise RuntimeError(f"{' '.join(result.command[:5])} ... exited with {result.exit_code}:\n{result.tail()}")
    return result


def child_env(**extra: str) -> dict:
    """The environment of a measured child: this checkout first on the import path (not whatever
    vae_cli is installed), TensorFlow's start-up chatter off, plus extra. A KERAS_BACKEND of the
    parent's environment is dropped: each side runs on its own default engine unless extra names one."""
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return env


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the platform has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_description() -> str:
    """e.g. "Intel(R) Xeon(R) Processor, 2 cores, x86_64, AVX512": what a reader needs to place a number."""
    flags = cpu_flags()
    vector = next((name for flag, name in (("avx512f", "AVX512"), ("avx2", "AVX2"), ("avx", "AVX")) if flag in flags),
                  None)
    return ", ".join(filter(None, [cpu_name(), f"{os.cpu_count()} cores", platform.machine(), vector]))


def memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def versions(*packages: str) -> dict[str, str | None]:
    """Installed versions, read from the package metadata (nothing is imported); None: not installed."""
    found = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine() -> dict:
    """The machine and software a benchmark ran on, for its JSON and its table's heading."""
    return {"cpu": cpu_name(), "cpu_description": cpu_description(), "cores": os.cpu_count(),
            "memory_gib": memory_gib(), "gpu": any(Path("/dev").glob("nvidia[0-9]*")),
            "platform": platform.platform(), "python": platform.python_version(),
            "versions": versions("numpy", "tensorflow", "keras", "jax", "jaxlib", "torch"),
            "date": time.strftime("%Y-%m-%d %H:%M")}

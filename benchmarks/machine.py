"""What the benchmarks record about the machine they ran on: the CPU model, the CPU flags that decide the fast
bf16/int8 paths (AMX, AVX-512 BF16/VNNI) and the load average, since the machine is shared."""

from __future__ import annotations

from pathlib import Path

MATMUL_FLAGS = ("amx", "avx512_bf16", "avx512_vnni")
BF16_FLAGS = ("amx", "avx512_bf16")


def _cpuinfo_field(name: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags(prefixes: tuple[str, ...] = MATMUL_FLAGS) -> list[str]:
    """The CPU's flags starting with one of `prefixes`, sorted."""
    flags = _cpuinfo_field("flags") or ""
    return sorted(f for f in flags.split() if f.startswith(prefixes))


def cpu_model(with_flags: bool = False) -> str:
    """The model name, as `lscpu` shows it; with_flags appends the bf16 flags, e.g. "... (amx_bf16 amx_tile)"."""
    model = _cpuinfo_field("model name") or "unknown"
    flags = cpu_flags(BF16_FLAGS) if with_flags else []
    return f"{model} ({' '.join(flags)})" if flags else model


def loadavg() -> list[str]:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg writes them."""
    return Path("/proc/loadavg").read_text().split()[:3]

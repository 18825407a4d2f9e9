"""A machine is its hardware, not its host name.

Two machines can share a host name (every VM here is called ``vm``) and differ in CPU, cores,
memory or GPU; their timings must never share a table. ``identify()`` reads the hardware without
importing a framework (Linux: /proc; the GPU from nvidia-smi or the driver's /proc entries) and
derives an id from it, which names the results folder and keys every table.
"""
from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import subprocess
from typing import Dict, List, Optional


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _memory_bytes() -> Optional[int]:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def gpus() -> List[str]:
    """The NVIDIA GPUs' names: nvidia-smi where it runs, else the driver's /proc entries; none
    without a driver."""
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=20)
            names = [line.strip() for line in out.stdout.splitlines() if line.strip()]
            if out.returncode == 0 and names:
                return names
        except (OSError, subprocess.SubprocessError):
            pass
    names = []
    for path in sorted(glob.glob("/proc/driver/nvidia/gpus/*/information")):
        try:
            with open(path) as handle:
                for line in handle:
                    if line.startswith("Model:"):
                        names.append(line.split(":", 1)[1].strip())
        except OSError:
            continue
    return names


def slug(text: str) -> str:
    text = re.sub(r"\((r|tm)\)", "", text.lower())
    text = re.sub(r"\b(processor|cpu|core|\d+-core)\b", " ", text)
    text = re.sub(r"@.*$", "", text)
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def machine_id(info: Dict[str, object]) -> str:
    """cpu-Nc-Mg[-gpu]: the same for the same hardware, different wherever the hardware differs. The host
    name is left out: VMs of different hardware share one (``vm``), and a lent GPU machine has a new
    one every time."""
    memory = info.get("memory_bytes")
    memory_part = f"{round(int(memory) / 2 ** 30)}g" if isinstance(memory, (int, float)) else ""
    parts = [slug(str(info.get("cpu") or "cpu")), f"{info.get('cores')}c", memory_part]
    gpu_names = info.get("gpus") or []
    if gpu_names:
        parts.append(slug(str(gpu_names[0])) + (f"x{len(gpu_names)}" if len(gpu_names) > 1 else ""))
    return "-".join(part for part in parts if part)


def identify() -> Dict[str, object]:
    info: Dict[str, object] = {
        "hostname": platform.node() or "unknown",
        "cpu": _cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "gpus": gpus(),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
    }
    info["id"] = machine_id(info)
    return info


def describe(info: Dict[str, object]) -> str:
    memory = info.get("memory_bytes")
    memory_text = f"{int(memory) / 2 ** 30:.0f} GiB" if isinstance(memory, (int, float)) else "? GiB"
    gpu_names = info.get("gpus") or []
    gpu_text = ", ".join(gpu_names) if gpu_names else "no GPU"
    return f"{info.get('cpu', '?')}, {info.get('cores', '?')} cores, {memory_text} memory, {gpu_text}"

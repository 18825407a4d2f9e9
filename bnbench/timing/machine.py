"""A machine is its hardware, not its host name.

Two machines can share a host name (every VM here is called ``vm``) and differ in CPU, cores,
memory or GPU; their timings must never share a table. ``identify()`` reads the hardware without
importing a framework (Linux: /proc; the GPU from nvidia-smi or the driver's /proc entries) and
derives an id from it, which names the results folder and keys every table.

A model name is not an identity: two VMs both reporting "AMD EPYC" were a family 25 CPU with AVX2
and a family 26 one with AVX-512, and one's `make bench` replaced the other's tables. The id also
carries the CPU's own facts (``cpu_facts``): its family, model and stepping (on ARM: implementer,
part, variant and revision) and its widest vector extension. Results under an id made before
(``LEGACY_ID``: no such facts in it) stay where they are, and the tables say what such an id lacks.
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


# the widest vector extension first (x86, then ARM)
VECTOR_EXTENSIONS = ("avx512f", "avx2", "avx", "sse4_2", "sse2", "sve2", "sve", "asimd", "neon")
LEGACY_NOTE = "an id from before CPU facts (family, model, vector extension) were part of it"


def cpu_facts(cpuinfo: str) -> Dict[str, object]:
    """The CPU's own facts from the text of /proc/cpuinfo (its first processor): vendor, family,
    model and stepping on x86, implementer, part, variant and revision on ARM; the widest vector
    extension among its flags. Missing facts are left out."""
    fields: Dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break           # the first processor's block has ended
            continue
        key, _, value = line.partition(":")
        fields.setdefault(" ".join(key.split()).lower(), value.strip())
    names = {"vendor_id": "vendor", "cpu family": "family", "model": "model", "stepping": "stepping",
             "cpu implementer": "implementer", "cpu part": "part", "cpu variant": "variant", "cpu revision": "revision"}
    facts: Dict[str, object] = {ours: fields[theirs] for theirs, ours in names.items() if fields.get(theirs)}
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    widest = next((extension for extension in VECTOR_EXTENSIONS if extension in flags), None)
    if widest:
        facts["vector"] = widest
    return facts


def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            return handle.read()
    except OSError:
        return ""


def _facts_part(facts: Dict[str, object]) -> str:
    """'f25m1s1-avx2' (x86) or 'i0x41p0xd0cv1r1-sve' (ARM): the id's part from the CPU's facts."""
    if "family" in facts:
        core = f"f{facts['family']}m{facts.get('model', '')}s{facts.get('stepping', '')}"
    elif "part" in facts:
        core = f"i{facts.get('implementer', '')}p{facts['part']}v{facts.get('variant', '')}r{facts.get('revision', '')}"
    else:
        core = ""
    return "-".join(slug(str(part)) for part in (core, facts.get("vector", "")) if part)


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
    """cpu-facts-Nc-Mg[-gpu]: the same for the same hardware, different wherever the hardware differs
    (two CPU generations behind one model name too: ``cpu_facts``). The host name is left out: VMs
    of different hardware share one (``vm``), and a lent GPU machine has a new one every time."""
    memory = info.get("memory_bytes")
    memory_part = f"{round(int(memory) / 2 ** 30)}g" if isinstance(memory, (int, float)) else ""
    facts = info.get("cpu_facts") if isinstance(info.get("cpu_facts"), dict) else {}
    parts = [slug(str(info.get("cpu") or "cpu")), _facts_part(facts), f"{info.get('cores')}c", memory_part]
    gpu_names = info.get("gpus") or []
    if gpu_names:
        parts.append(slug(str(gpu_names[0])) + (f"x{len(gpu_names)}" if len(gpu_names) > 1 else ""))
    return "-".join(part for part in parts if part)


def identify() -> Dict[str, object]:
    info: Dict[str, object] = {
        "hostname": platform.node() or "unknown",
        "cpu": _cpu_model(),
        "cpu_facts": cpu_facts(_cpuinfo()),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "gpus": gpus(),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
    }
    info["id"] = machine_id(info)
    return info


def asv_machine_id(params: Dict[str, object]) -> str:
    """The id of the machine an asv result file (its ``params``) was made on, the key the asv tables
    and the comparisons share: asv's machine name where ``make bench`` named the machine by its id,
    else the id the hardware asv recorded gives (a legacy id: asv records no CPU facts), so that two
    machines sharing a host name never share a table."""
    name = str(params.get("machine", ""))
    try:
        memory: Optional[int] = int(params["ram"])      # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        memory = None
    cpu, cores = str(params.get("cpu") or ""), params.get("num_cpu", "?")
    if cpu and name.startswith(slug(cpu) + "-") and f"-{cores}c-" in name + "-":
        return name         # an id of this hardware, with the CPU facts asv does not record
    if not cpu:
        return slug(name or "unknown")
    return machine_id({"cpu": cpu, "cores": cores, "memory_bytes": memory})


def asv_legacy(params: Dict[str, object]) -> bool:
    """Whether an asv result's machine key is a legacy id: made from the hardware asv recorded, the
    run's machine not named by its id."""
    return asv_machine_id(params) != str(params.get("machine", ""))


def legacy(info: Dict[str, object]) -> bool:
    """Whether ``info`` (a result's machine) was identified before the CPU's facts were part of its id."""
    return not isinstance(info.get("cpu_facts"), dict)


def describe(info: Dict[str, object]) -> str:
    memory = info.get("memory_bytes")
    memory_text = f"{int(memory) / 2 ** 30:.0f} GiB" if isinstance(memory, (int, float)) else "? GiB"
    gpu_names = info.get("gpus") or []
    gpu_text = ", ".join(gpu_names) if gpu_names else "no GPU"
    facts = info.get("cpu_facts") if isinstance(info.get("cpu_facts"), dict) else None
    facts_text = (" (" + ", ".join(f"{key} {value}" for key, value in facts.items()) + ")") if facts else ""
    return (f"{info.get('cpu', '?')}{facts_text}, {info.get('cores', '?')} cores, {memory_text} memory, {gpu_text}"
            + ("" if facts else f"; {LEGACY_NOTE}"))

"""The wheels a lent GPU machine lacks, made on this machine (which reaches PyPI) for that machine's
Python, from the frameworks' declarations (``gpu_requirements``) and the suite's own needs there.

The lent machine (an H100/H200, no network) has Python 3.12 with torch, jax and its CUDA plugin,
numpy and much else (``GPU_HAS``, as its page in the device tool lists them, read 2026-11-17).
What it lacks travels with the working tree, whose size is limited (64 MiB in all): a framework
whose wheels would not fit stays behind, and its GPU row says why, with their size.

``python -m bnbench.catalogue.wheelhouse [--out .whl] [--dry-run]`` (``scripts/gpu-wheelhouse.sh``):
the dry run resolves what would travel (pip's own resolver, for Python 3.12 manylinux x86_64) and
asks PyPI each wheel's size, downloading nothing; without it the wheels land in ``--out`` with a
manifest, ``wheelhouse.json``, which ``scripts/gpu-run.sh`` reads.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from typing import Dict, List, Optional, Sequence

from bnbench.adapters.registry import local_class, names
from bnbench.reference.io import atomic_write_json

GPU_PYTHON = "3.12"
GPU_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                 "manylinux1_x86_64")
# Distributions the lent GPU machine has (its image's package list); nothing of these travels.
GPU_HAS = frozenset(re.sub(r"[-_.]+", "-", name).lower() for name in """
absl-py accelerate aiohttp attrs certifi charset-normalizer click cloudpickle contourpy cycler etils filelock flatbuffers
flax fonttools fsspec grpcio h5py humanize idna jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jinja2 joblib kiwisolver
markdown markdown-it-py markupsafe matplotlib mdurl ml-dtypes mpmath msgpack networkx numpy opt-einsum optax
orbax-checkpoint packaging pandas pillow pip protobuf psutil pygments pyparsing python-dateutil pyyaml requests rich
safetensors scikit-learn scipy setuptools six sympy tensorstore threadpoolctl toolz torch tqdm treescope triton
typing-extensions urllib3 wheel wrapt zipp nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-nccl-cu13 nvidia-nvjitlink
""".split())
# What the suite itself needs there beyond that: Optuna, for tuning on the card (caviar).
SUITE_NEEDS = ("optuna",)
# Of the 64 MiB that travel, what the wheels may take (the checkout and its results take the rest).
LIMIT_BYTES = 48 * 2 ** 20


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wanted() -> Dict[str, Sequence[str]]:
    """Every framework that declares a GPU, with the requirements its CUDA build needs beyond the
    lent machine's (empty: it has it), and the suite's own needs there."""
    out = {"bnbench (tuning)": SUITE_NEEDS}
    for name in names():
        adapter = local_class(name)
        if "cuda" in adapter.devices:
            out[name] = tuple(adapter.gpu_requirements)
    return out


def _pip(*arguments: str) -> subprocess.CompletedProcess:
    platform = [flag for p in GPU_PLATFORMS for flag in ("--platform", p)]
    command = [sys.executable, "-m", "pip", *arguments, "--disable-pip-version-check", "--only-binary=:all:",
               "--python-version", GPU_PYTHON, "--implementation", "cp", *platform]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


def _why(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in (done.stderr or done.stdout).splitlines() if line.startswith("ERROR")]
    first = (lines or (done.stderr or "pip failed").splitlines()[-1:] or ["pip failed"])[0]
    return first.split(" (from versions:")[0].replace("ERROR: ", "")


def _size(url: str) -> Optional[int]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=30) as reply:
            return int(reply.headers.get("Content-Length"))
    except (OSError, ValueError, TypeError):
        return None


def _resolve(requirements: Sequence[str], *, deps: bool) -> Dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        report = os.path.join(folder, "report.json")
        done = _pip("install", "--dry-run", "--ignore-installed", "--target", os.path.join(folder, "target"),
                    "--report", report, *(() if deps else ("--no-deps",)), *requirements)
        if done.returncode != 0:
            return {"travels": False, "reason": f"pip finds no wheel set for Python {GPU_PYTHON}: {_why(done)}"}
        with open(report, encoding="utf-8") as handle:
            return {"installs": json.load(handle).get("install", [])}


def plan(requirements: Sequence[str], limit: int = LIMIT_BYTES) -> Dict[str, object]:
    """What ``requirements`` would bring to the lent machine, resolved by pip for its Python,
    downloading no wheel: the distributions it lacks, each with its version, wheel and size. The
    requirements' own wheels are sized first: a set whose first wheels alone exceed ``limit``
    stays behind without resolving the rest."""
    first = _resolve(requirements, deps=False)
    if "installs" not in first:
        return first
    alone = sum(_size(item["download_info"]["url"]) or 0 for item in first["installs"]
                if normalised(item["metadata"]["name"]) not in GPU_HAS)
    if alone > limit:
        return {"travels": False, "wheels": [], "bytes": alone,
                "reason": f"its own wheels take {alone / 2 ** 20:.0f} MiB, before their dependencies: more than the "
                          f"{limit / 2 ** 20:.0f} MiB that travel to the GPU machine"}
    resolved = _resolve(requirements, deps=True)
    if "installs" not in resolved:
        return resolved
    installs = resolved["installs"]
    wheels = []
    for item in installs:
        name = item["metadata"]["name"]
        if normalised(name) in GPU_HAS:
            continue
        url = item["download_info"]["url"]
        wheels.append({"name": name, "version": item["metadata"]["version"], "wheel": url.rsplit("/", 1)[-1],
                       "bytes": _size(url)})
    total = sum(wheel["bytes"] or 0 for wheel in wheels)
    return {"travels": True, "wheels": wheels, "bytes": total}


def decide(plans: Dict[str, Dict[str, object]], limit: int = LIMIT_BYTES) -> Dict[str, Dict[str, object]]:
    """Which of the planned sets travel: the smallest first while they fit under ``limit``
    together (a wheel two of them share counted once); the others say why, with their size."""
    carried: Dict[str, int] = {}
    for name, entry in sorted(plans.items(), key=lambda item: item[1].get("bytes") or 0):
        if not entry.get("travels") or not entry.get("wheels"):
            continue
        new = {wheel["wheel"]: wheel["bytes"] or 0 for wheel in entry["wheels"] if wheel["wheel"] not in carried}
        if sum(carried.values()) + sum(new.values()) > limit:
            entry["travels"] = False
            entry["reason"] = (f"its wheels take {entry['bytes'] / 2 ** 20:.0f} MiB, more than the "
                               f"{(limit - sum(carried.values())) / 2 ** 20:.0f} MiB left of what travels to the GPU machine")
            continue
        carried.update(new)
    return plans


def build(out: str, *, dry_run: bool = False) -> Dict[str, object]:
    """Plan every set, decide what travels, and (unless ``dry_run``) download those wheels into
    ``out`` with the manifest ``wheelhouse.json``; the manifest."""
    plans = {}
    for name, requirements in wanted().items():
        plans[name] = plan(requirements) if requirements else {"travels": True, "wheels": [], "bytes": 0,
                                                                "note": "the lent GPU machine has it"}
    plans = decide(plans)
    manifest = {"python": GPU_PYTHON, "platforms": list(GPU_PLATFORMS), "limit_bytes": LIMIT_BYTES, "frameworks": plans,
                "dry_run": dry_run}
    if not dry_run:
        os.makedirs(out, exist_ok=True)
        wheels = sorted({f"{w['name']}=={w['version']}" for entry in plans.values() if entry.get("travels")
                         for w in entry.get("wheels", [])})
        if wheels:
            done = _pip("download", "--no-deps", "--dest", out, *wheels)
            if done.returncode != 0:
                raise RuntimeError(f"pip download failed: {_why(done)}")
        atomic_write_json(os.path.join(out, "wheelhouse.json"), manifest)
    return manifest


def table(manifest: Dict[str, object]) -> str:
    lines = []
    for name, entry in manifest["frameworks"].items():
        if entry.get("note"):
            lines.append(f"{name}: {entry['note']}")
        elif entry.get("travels"):
            listed = ", ".join(f"{w['name']} {w['version']}" for w in entry["wheels"])
            lines.append(f"{name}: travels, {entry['bytes'] / 2 ** 20:.1f} MiB ({listed})")
        else:
            lines.append(f"{name}: stays behind: {entry['reason']}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bnbench.catalogue.wheelhouse", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".whl", help="where the wheels and wheelhouse.json go (default .whl)")
    parser.add_argument("--dry-run", action="store_true", help="resolve and size what would travel; download nothing")
    args = parser.parse_args(argv)
    manifest = build(args.out, dry_run=args.dry_run)
    print(table(manifest))
    if not args.dry_run:
        print(f"wrote {args.out}/ and {os.path.join(args.out, 'wheelhouse.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

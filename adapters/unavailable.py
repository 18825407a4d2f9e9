"""Frameworks of the lecture's list that cannot run here. Each keeps a row, with the reason that
was measured (docs/FRAMEWORKS.md), until it can: `bnbench frameworks` shows them as
unavailable and nothing tries to run them."""
from __future__ import annotations

import importlib.util
from typing import ClassVar, Dict, Optional

from .contract import Adapter


class UnavailableAdapter(Adapter):
    modes = ()
    devices = ("cpu",)
    why: ClassVar[str] = ""

    @classmethod
    def missing_requirement(cls) -> Optional[str]:
        return cls.why

    @classmethod
    def import_error(cls) -> Optional[str]:
        return cls.missing_requirement()

    def _build(self, params: Dict) -> None:   # never reached: check_combination refuses first
        raise NotImplementedError(self.why)

    train_step = gradients = predict_proba = state = _build


class Caffe2Adapter(UnavailableAdapter):
    name = "caffe2"
    status = "retired: merged into PyTorch in 2018, later removed from it"

    @classmethod
    def missing_requirement(cls) -> Optional[str]:
        if importlib.util.find_spec("caffe2") is not None:
            return ("a 'caffe2' module is importable here, but no adapter is written for it: Caffe2's Python "
                    "API was removed from PyTorch (PyTorch 2.x ships only its headers and a CMake name)")
        return ("Caffe2 was merged into PyTorch and then removed: PyTorch 2.13 ships only headers and a CMake "
                "name, no caffe2 Python package exists for this Python")


class CntkAdapter(UnavailableAdapter):
    name = "cntk"
    status = "retired: Microsoft announced 2.7 (2019) as CNTK's last feature release"
    why = ("CNTK's last release (2.7.post2, 2020) has wheels for Python 2.7, 3.5 and 3.6 only; the cp36 wheel "
           "installs under this machine's pyenv Python 3.6.15, but `import cntk` fails: libmpi_cxx.so.1 "
           "(Open MPI 1.x, which CNTK links against) is not on the machine (measured 2026-11-25); and the suite's "
           "worker needs Python >= 3.9")


class Dl4jAdapter(UnavailableAdapter):
    name = "dl4j"
    status = "maintained by the Eclipse Foundation (Eclipse Deeplearning4j), on the JVM"
    why = ("Deeplearning4j runs on the JVM and fetches its jars from Maven Central at run time (PyPI's pydl4j "
           "downloads them); Maven Central is not reachable from these machines")

"""Every file derived from the frameworks' declarations agrees with them (`make generate`)."""
import dataclasses
import os
import shutil

from bnbench.adapters.registry import local_class
from bnbench.catalogue import generate as catalogue

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_generated_files_are_current():
    stale = [path for path, _ in catalogue.stale(ROOT)]
    assert not stale, f"stale generated files (run `make generate`): {stale}"


def test_a_changed_declaration_makes_them_stale(tmp_path, monkeypatch):
    for path in catalogue.targets([]):
        os.makedirs(tmp_path / os.path.dirname(path), exist_ok=True)
        shutil.copy(os.path.join(ROOT, path), tmp_path / path)
    shutil.copytree(os.path.join(ROOT, "results", "compare"), tmp_path / "results" / "compare")   # the glance's data
    assert catalogue.stale(str(tmp_path)) == []
    torch = local_class("torch")
    monkeypatch.setattr(torch, "declaration", dataclasses.replace(torch.declaration, requirements=("torch==9.9.9",)))
    stale = dict(catalogue.stale(str(tmp_path)))
    assert set(stale) == {"asv.conf.json", "pyproject.toml", os.path.join("docs", "GUIDE.md")}
    assert '"torch": "9.9.9"' in stale["asv.conf.json"] and 'torch = ["torch==9.9.9"]' in stale["pyproject.toml"]
    assert catalogue.main(["--check", "--root", str(tmp_path)]) == 1
    assert catalogue.main(["--root", str(tmp_path)]) == 0 and catalogue.stale(str(tmp_path)) == []


def test_generated_files_say_so():
    for path in catalogue.targets([]):
        assert catalogue.NOTICE in open(os.path.join(ROOT, path), encoding="utf-8").read(), path

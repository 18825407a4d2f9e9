"""Every file derived from the frameworks' declarations agrees with them (`make generate`)."""
import dataclasses
import os
import shutil

import pytest

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


FAKE = '''"""A framework made up by tests/test_catalogue.py: a declaration and nothing else."""
from .contract import Adapter


class FakeAdapter(Adapter):
    name = "fakefw"
    modes = ("eager",)
    best_mode = "eager"
    requires = ("fakefw_is_not_installed",)
    requirements = ("fakefw==1.0",)
    description = "made up by the catalogue's test"
    status = "made up"

    def _build(self, params):
        raise NotImplementedError

    train_step = gradients = predict_proba = state = _build
'''


@pytest.mark.slow
def test_a_new_framework_is_its_adapter_module_and_nothing_else(tmp_path):
    """A fake framework's declaration added to a copy of the checkout: `make generate` changes the
    generated files, each of which then names it, and nothing else needs writing: the tests that
    cover every framework derive their lists from the declarations and pass in the copy."""
    import subprocess
    import sys

    copy = tmp_path / "checkout"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for path in tracked:
        if path.startswith("results/") and not path.startswith("results/compare/"):
            continue
        (copy / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.join(ROOT, path), copy / path)
    (copy / "adapters" / "fakefw_adapter.py").write_text(FAKE)
    for folder in ("reference", "adapters"):        # the copy laid out as it is imported (pyproject's package-dir)
        (copy / "bnbench" / folder).symlink_to(copy / folder)
    env = dict(os.environ, PYTHONPATH=str(copy))
    before = {path: (copy / path).read_text() for path in catalogue.targets([])}
    done = subprocess.run([sys.executable, "-m", "bnbench.catalogue"], cwd=str(copy), capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    changed = {path for path in before if (copy / path).read_text() != before[path]}
    assert changed == {"asv.conf.json", os.path.join("scripts", "frameworks.mk"), "pyproject.toml",
                       os.path.join("docs", "GUIDE.md"), "README.md"}
    assert all("fakefw" in (copy / path).read_text() for path in changed)
    tests = ["tests/test_catalogue.py::test_generated_files_are_current", "tests/test_layers.py",
             "tests/test_benchmarks.py::test_every_adapter_mode_is_benchmarked_in_an_environment",
             "tests/test_benchmarks.py::test_importing_the_suite_imports_no_framework",
             "tests/test_worker.py::test_a_proxy_shares_its_framework_s_declaration_object"]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *tests],
                         cwd=str(copy), capture_output=True, text=True, env=dict(env, BNBENCH_FRAMEWORKS=""), timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]

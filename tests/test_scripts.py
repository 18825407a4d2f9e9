"""What the suite leaves on the machine: no fixed path in /tmp written as root, no folder of a
framework's left behind."""
import glob
import os

from tests.conftest import require_adapter
from tests.test_worker import problem

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_no_script_writes_a_fixed_path_in_tmp():
    """ensure-debian-packages.sh and ensure-postgresql.sh wrote /tmp/bnbench-apt-*.log as root: a
    link planted there first would have been followed. Each takes a name of its own (mktemp)."""
    for path in glob.glob(os.path.join(ROOT, "scripts", "*.sh")) + [os.path.join(ROOT, "Makefile")]:
        with open(path) as handle:
            for number, line in enumerate(handle, 1):
                code = line.split("#", 1)[0]
                assert "/tmp/" not in code, f"{os.path.relpath(path, ROOT)}:{number}: {line.strip()}"


def test_caffe_leaves_no_folder_behind():
    """Each Caffe model wrote its nets' definitions to a folder of /tmp that was never removed."""
    caffe = require_adapter("caffe")
    from bnbench.adapters.placement import environments_dir
    from bnbench.timing.worker import close_workers

    tmp = os.path.join(environments_dir(), "caffe-root", "tmp")
    before = set(glob.glob(os.path.join(tmp, "bnbench-caffe-*")))
    spec, params, X, y = problem("float32")
    model = caffe(spec, params)
    model.train_step(X[0], y[0])
    del model
    close_workers()
    assert set(glob.glob(os.path.join(tmp, "bnbench-caffe-*"))) == before

"""reference.io: atomic writes keep a file's mode, and a child's private folder is its own."""
import os
import stat

from bnbench.reference.io import atomic_write_text, private_directory


def test_an_atomic_write_keeps_the_file_s_mode_and_a_new_file_gets_the_umask_s(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("old")
    readme.chmod(0o644)
    atomic_write_text(readme, "new")               # mkstemp's 0600 turned README.md from 644 into 600
    assert readme.read_text() == "new" and stat.S_IMODE(readme.stat().st_mode) == 0o644
    readme.chmod(0o640)
    atomic_write_text(readme, "newer")
    assert stat.S_IMODE(readme.stat().st_mode) == 0o640
    previous = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "fresh.json", "{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "fresh.json").stat().st_mode) == 0o640


def test_a_private_directory_is_new_empty_private_and_removed():
    with private_directory() as folder:
        assert os.listdir(folder) == [] and stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        open(os.path.join(folder, "left"), "w").close()
    assert not os.path.exists(folder)

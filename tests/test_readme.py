"""The README is a front door: short, the two commands of the quick start near its top, and links
that lead somewhere."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")


def test_the_readme_fits_a_screen_or_two_and_opens_with_the_two_commands():
    text = open(README, encoding="utf-8").read()
    assert len(text.split()) <= 700, f"README.md has {len(text.split())} words; at most 700"
    head = text.splitlines()[:30]
    for command in ("make bench", "make test"):
        assert any(line.startswith(command) for line in head), f"{command!r} is not in README.md's first 30 lines"


def test_every_local_link_of_the_readme_leads_to_a_file_and_its_heading():
    text = open(README, encoding="utf-8").read()
    for target in re.findall(r"\]\(([^)#]+)(?:#([^)]+))?\)", text):
        path, anchor = target
        if "://" in path:
            continue
        full = os.path.join(ROOT, path)
        assert os.path.exists(full), f"README.md links to {path}, which does not exist"
        if anchor:
            headings = [re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
                        for line in open(full, encoding="utf-8") if line.startswith("#")]
            assert anchor in headings, f"README.md links to {path}#{anchor}, a heading it lacks"

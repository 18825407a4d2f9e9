"""A participant's label is parsed and printed by one module, bnbench.timing.form, and by no other."""
import os
import re
import subprocess

import pytest

from bnbench.timing.form import CONTROL, Form, FormError, is_label, numbered, parse_item

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("label, form", [
    ("numpy:reference", Form("numpy", "reference")),
    ("torch:eager+channels_last", Form("torch", "eager", "channels_last")),
    ("jax:jit#2", Form("jax", "jit", copy="2")),
    ("keras-jax:jit+xla#3", Form("keras-jax", "jit", "xla", "3")),
    ("numpy:eager#control", Form("numpy", "eager", copy=CONTROL)),
])
def test_a_label_is_parsed_and_printed_back_unchanged(label, form):
    assert Form.parse(label) == form
    assert str(form) == label
    assert is_label(label)


@pytest.mark.parametrize("label", ["numpy", "numpy:", ":eager", "numpy:eager+", "numpy:eager#", "numpy:eager#1",
                                   "numpy:eager#x", "numpy:+alt", "a:b:c", "numpy:eager+a+b"])
def test_a_label_that_is_no_form_is_refused_with_the_label_named(label):
    with pytest.raises(FormError, match=re.escape(repr(label))):
        Form.parse(label)
    assert not is_label(label)


def test_the_parts_of_a_form_and_its_copies():
    form = Form.of("torch", "eager+channels_last")
    assert (form.mode, form.variant, form.mode_form) == ("eager", "channels_last", "eager+channels_last")
    assert str(form.control) == "torch:eager+channels_last#control" and form.control.base == form
    assert Form.parse("torch:eager#2").mode_label == "eager#2"
    assert [str(f) for f in numbered([("numpy", "eager"), ("jax", "jit"), ("numpy", "eager"), ("numpy", "eager")])] == [
        "numpy:eager", "jax:jit", "numpy:eager#2", "numpy:eager#3"]


@pytest.mark.parametrize("item, parsed", [("numpy", ("numpy", None)), ("numpy:eager", ("numpy", "eager")),
                                          ("torch:eager+channels_last", ("torch", "eager+channels_last"))])
def test_a_command_line_item(item, parsed):
    assert parse_item(item) == parsed


@pytest.mark.parametrize("item", ["numpy:", "numpy:eager+", "numpy:eager#2", "numpy+x", ""])
def test_a_command_line_item_that_is_no_form_is_refused(item):
    with pytest.raises(FormError, match="is not NAME, NAME:MODE or NAME:MODE\\+ALTERNATIVE"):
        parse_item(item)


def test_no_module_but_the_form_s_builds_or_splits_a_label():
    """The label's marks (':' between framework and mode, '+' before an alternative, '#' before a
    copy) are joined and split in bnbench/timing/form.py alone."""
    patterns = [r"\}:\{", r"\}\+\{", r"\}#\{", r"split\(\":\"", r"partition\(\"[:+#]\"\)", r"\"[+#]\" in "]
    found = subprocess.run(["git", "grep", "-n", "-E", "|".join(patterns), "--", "bnbench", "benchmarks",
                            ":!bnbench/timing/form.py", ":!bnbench/timing/machine.py", ":!bnbench/tuning/storage.py"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    offences = [line for line in found.stdout.splitlines() if "raise " not in line]
    assert not offences, "labels built or split by hand:\n" + "\n".join(offences)

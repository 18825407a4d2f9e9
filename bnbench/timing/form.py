"""A participant's name, parsed and printed here and nowhere else.

A **form** is how one framework is run: its mode, and optionally an alternative of that mode (the
same step written another way, or run under other variables). Its label is
``FRAMEWORK:MODE[+ALTERNATIVE][#COPY]``: the copy tells apart the same form run twice in one
comparison: 2, 3, ... for a form named again (the A/A check), ``control`` for the baseline's
control."""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

CONTROL = "control"


class FormError(ValueError):
    """A label that is not FRAMEWORK:MODE[+ALTERNATIVE][#COPY]."""


@dataclasses.dataclass(frozen=True)
class Form:
    framework: str
    mode: str
    variant: Optional[str] = None      # an alternative of the mode, by the name its adapter declares
    copy: Optional[str] = None         # None: the first of its name; '2', '3', ...: named again; 'control'

    def __post_init__(self):
        for field, value in (("framework", self.framework), ("mode", self.mode)):
            if not value or any(mark in value for mark in ":+#"):
                raise FormError(f"form {field} {value!r} is empty or holds one of ':', '+', '#'")
        if self.variant is not None and (not self.variant or any(mark in self.variant for mark in ":+#")):
            raise FormError(f"form variant {self.variant!r} is empty or holds one of ':', '+', '#'")
        if self.copy is not None and not (self.copy == CONTROL or (self.copy.isdigit() and int(self.copy) > 1)):
            raise FormError(f"form copy {self.copy!r} is neither a number above 1 nor {CONTROL!r}")

    # ----------------------------------------------------------------- printing
    @property
    def mode_form(self) -> str:
        """'MODE' or 'MODE+ALTERNATIVE': the form without its framework and copy."""
        return f"{self.mode}+{self.variant}" if self.variant else self.mode

    @property
    def mode_label(self) -> str:
        """'MODE[+ALTERNATIVE][#COPY]': the label without its framework (a table's mode column)."""
        return self.mode_form if self.copy is None else f"{self.mode_form}#{self.copy}"

    @property
    def base(self) -> "Form":
        """The same form, first copy."""
        return dataclasses.replace(self, copy=None)

    @property
    def control(self) -> "Form":
        """This form's control: a second instance of it, timed beside it."""
        return dataclasses.replace(self, copy=CONTROL)

    def __str__(self) -> str:
        return f"{self.framework}:{self.mode_label}"

    # ----------------------------------------------------------------- parsing
    @classmethod
    def parse(cls, label: str) -> "Form":
        """'FRAMEWORK:MODE[+ALTERNATIVE][#COPY]' -> Form; FormError naming the label otherwise."""
        text = str(label)
        framework, colon, rest = text.partition(":")
        rest, hash_mark, copy = rest.partition("#")
        mode, plus, variant = rest.partition("+")
        if not colon or (plus and not variant):
            raise FormError(f"label {text!r} is not FRAMEWORK:MODE[+ALTERNATIVE][#COPY]")
        try:
            return cls(framework, mode, variant or None, copy if hash_mark else None)
        except FormError as error:
            raise FormError(f"label {text!r}: {error}") from None

    @classmethod
    def of(cls, framework: str, mode_form: str, copy: Optional[str] = None) -> "Form":
        """A framework and 'MODE[+ALTERNATIVE]' -> Form."""
        mode, variant = split_mode_form(mode_form)
        return cls(framework, mode, variant, copy)


def is_label(text) -> bool:
    """Whether ``text`` is a form's label."""
    try:
        Form.parse(str(text))
    except FormError:
        return False
    return True


def split_mode_form(mode_form: str) -> Tuple[str, Optional[str]]:
    """'MODE+ALTERNATIVE' -> (MODE, ALTERNATIVE); 'MODE' -> (MODE, None)."""
    mode, _, variant = str(mode_form).partition("+")
    return mode, variant or None


def parse_item(item: str) -> Tuple[str, Optional[str]]:
    """A command line's 'NAME', 'NAME:MODE' or 'NAME:MODE+ALTERNATIVE' -> (NAME, 'MODE[+ALTERNATIVE]'
    or None: the framework's best mode). FormError naming the item otherwise."""
    name, colon, mode_form = item.partition(":")
    if not colon:
        if not name or any(mark in name for mark in "+#"):
            raise FormError(f"item {item!r} is not NAME, NAME:MODE or NAME:MODE+ALTERNATIVE")
        return name, None
    try:
        form = Form.parse(item)
    except FormError:
        raise FormError(f"item {item!r} is not NAME, NAME:MODE or NAME:MODE+ALTERNATIVE") from None
    if "#" in item:
        raise FormError(f"item {item!r} is not NAME, NAME:MODE or NAME:MODE+ALTERNATIVE")
    return form.framework, form.mode_form


def numbered(pairs: Sequence[Tuple[str, str]]) -> List[Form]:
    """A Form for each (framework, 'MODE[+ALTERNATIVE]'), copies numbered 2, 3, ... where a pair is
    named again (the A/A check)."""
    seen: Dict[Tuple[str, str], int] = {}
    out = []
    for framework, mode_form in pairs:
        seen[(framework, mode_form)] = seen.get((framework, mode_form), 0) + 1
        count = seen[(framework, mode_form)]
        out.append(Form.of(framework, mode_form, None if count == 1 else str(count)))
    return out

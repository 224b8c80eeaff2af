"""Untrusted values read leniently: what the analysis takes from logs, records and JSON-lines files.

Nothing here raises for any input. Numbers are JSON numbers (bools excluded); :func:`finite` keeps
NaN and infinities out of the sidecar's JSON, while a loss keeps them (:func:`as_loss`: a run whose
loss diverged fails); JSON's ``NaN`` / ``Infinity`` literals are dropped or kept as their text
(:class:`Constant`), as the caller asks.
"""

from __future__ import annotations

import json
import math
from typing import Any


def pos_int(value: Any) -> int | None:
    """``value`` when it is a positive int (bools excluded), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def number(value: Any) -> float | None:
    """``value`` as a float when it is a JSON number (bools excluded; huge ints become +-inf)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    return None


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number, else None (keeps NaN out of JSON)."""
    as_float = number(value)
    return as_float if as_float is not None and math.isfinite(as_float) else None


def good_time(value: float | None) -> bool:
    """True for a usable iteration or window time: a finite positive number."""
    return value is not None and math.isfinite(value) and value > 0


def one_line(text: str) -> str:
    """``text`` with its whitespace runs (newlines included) as single spaces; never empty."""
    return " ".join(str(text).split()) or "unknown failure"


class Constant(str):
    """A JSON ``NaN`` / ``Infinity`` / ``-Infinity`` literal, kept as its text: no number
    (:func:`number` and :func:`finite` see None), but a loss that became one shows (:func:`as_loss`)."""


def as_loss(value: Any) -> float | None:
    """A loss as logged: a number (NaN and inf kept, as a :class:`Constant` is) or None."""
    return float(value) if isinstance(value, Constant) else number(value)


def parse_json(text: str, *, drop_constants: bool, constant: Any = None) -> Any:
    """``json.loads`` that returns None instead of raising; NaN/Infinity become None if asked,
    or what ``constant`` makes of their text."""
    try:
        if constant is not None:
            return json.loads(text, parse_constant=constant)
        if drop_constants:
            return json.loads(text, parse_constant=lambda _: None)
        return json.loads(text)
    except (ValueError, RecursionError):
        return None

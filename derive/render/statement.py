"""One line of a generated module, ``target = code  # comment``: what every module renderer lays out."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Statement"]


@dataclass(frozen=True)
class Statement:
    """``target = code  # comment``: one line of the generated module."""

    target: str
    code: str
    comment: str = ""
    op: str = "="     # or an in-place "+=" / "*=" that reuses the array just made

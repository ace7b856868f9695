"""One error family for hepfastsim.

Every error a user can trigger derives from :class:`HepfastsimError`; messages name
the file, tree and branch involved and say what was expected and what was given.
The CLI prints ``str(err)`` on one line and exits non-zero.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "HepfastsimError",
    "InputFileError",
    "TreeNotFoundError",
    "BranchNotFoundError",
    "OutputError",
    "ModelError",
]


class HepfastsimError(Exception):
    """Base class of every error hepfastsim raises on purpose."""


class InputFileError(HepfastsimError):
    """An input file is missing, unreadable, not ROOT, or truncated."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read input file {self.path!r}: {reason}")


def _close_matches(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)


class TreeNotFoundError(HepfastsimError):
    """The expected TTree is not in the file."""

    def __init__(self, path: str, tree: str, available: Iterable[str]) -> None:
        self.path, self.tree = str(path), tree
        available = sorted(set(available))
        hint = f"; the file has: {', '.join(available[:10])}" if available else "; the file has no trees"
        super().__init__(f"no tree {tree!r} in {self.path!r}{hint}")


class BranchNotFoundError(HepfastsimError):
    """A required branch is missing from a tree; carries file, tree, branch and close matches."""

    def __init__(self, path: str, tree: str, branch: str, available: Iterable[str]) -> None:
        self.path, self.tree, self.branch = str(path), tree, branch
        self.close_matches = _close_matches(branch, available)
        hint = f" (did you mean {', '.join(self.close_matches)}?)" if self.close_matches else ""
        super().__init__(f"no branch {branch!r} in tree {tree!r} of {self.path!r}{hint}")


class OutputError(HepfastsimError):
    """The output destination exists, is unwritable, or writing failed."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        super().__init__(f"cannot write output file {self.path!r}: {reason}")


class ModelError(HepfastsimError):
    """A model name is unknown or its weights cannot be loaded."""

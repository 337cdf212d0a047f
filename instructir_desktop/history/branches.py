"""Alternative continuations of a history: what was undone and then replaced by another instruction.

The history keeps one current line of steps. Undoing some steps and then doing something else
no longer throws the undone ones away: they become a ``Branch`` that forks after the first
``fork`` steps of the line. Switching to it swaps it with the line's own continuation after
``fork``, which becomes a branch in turn, so the steps form a tree and nothing is lost.

Branches that fork inside a branch's steps travel with it (``Branch.branches``); their ``fork``
counts from the start of the line, like every fork.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from instructir_desktop.history.changes import PatchChange, detached

if TYPE_CHECKING:
    from instructir_desktop.history.steps import Step


@dataclass(eq=False)
class Branch:
    """Steps that continue the first ``fork`` steps of the line differently from the line itself.

    ``clean``: when the saved state lies in this branch, the line index it has once the branch is
    the line again (None: it does not).
    """

    fork: int
    steps: list[Step]
    branches: list[Branch] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    clean: int | None = None

    @property
    def tip(self) -> Step:
        """The last step of the branch: what it ended with."""
        return self.steps[-1]

    @property
    def kept(self) -> bool:
        """Every step still has its change: the branch can be shown (none was dropped for memory)."""
        return all(step.change is not None for step in self.steps)

    def all_steps(self) -> Iterator[Step]:
        yield from self.steps
        for nested in self.branches:
            yield from nested.all_steps()


def split_at(branches: Sequence[Branch], fork: int) -> tuple[list[Branch], list[Branch]]:
    """The branches that fork at or before ``fork`` (they stay with the line's first ``fork`` steps)
    and those that fork after it (they belong to the steps after ``fork``)."""
    kept = [branch for branch in branches if branch.fork <= fork]
    later = [branch for branch in branches if branch.fork > fork]
    return kept, later


def all_branches(branches: Sequence[Branch]) -> Iterator[Branch]:
    """Every branch, those nested in others included."""
    for branch in branches:
        yield branch
        yield from all_branches(branch.branches)


def without(branches: list[Branch], unwanted: Branch) -> bool:
    """Remove ``unwanted`` wherever it is in the tree; True if it was found."""
    if unwanted in branches:
        branches.remove(unwanted)
        return True
    return any(without(branch.branches, unwanted) for branch in branches)


def check_tree(branches: Sequence[Branch], low: int, high: int) -> None:
    """Raise ValueError unless every branch forks within ``low..high`` (the steps it can follow)
    and has steps, and its nested branches fork within its own steps."""
    for branch in branches:
        if not low <= branch.fork <= high:
            raise ValueError(f"a branch forks after step {branch.fork}, outside {low}..{high}")
        if not branch.steps:
            raise ValueError("a branch has no steps")
        check_tree(branch.branches, branch.fork + 1, branch.fork + len(branch.steps))


def release_swapped(steps: Sequence[Step]) -> None:
    """Steps set aside in a branch keep no full-size array (one is kept only for fast undo/redo)."""
    for step in steps:
        if isinstance(step.change, PatchChange):
            step.change.swapped_out = None


def detached_step(step: Step) -> Step:
    return replace(step, change=detached(step.change))


def detached_branch(branch: Branch) -> Branch:
    return replace(
        branch,
        steps=[detached_step(step) for step in branch.steps],
        branches=[detached_branch(nested) for nested in branch.branches],
    )

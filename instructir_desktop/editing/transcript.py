"""One conversation per photo: what was said about a document, kept with it.

When another photo opens, the runs so far are archived with the photo they were about (nothing in
them can be pressed any more) and the chat starts over. A project keeps its conversation as a
small JSON attachment, so reopening it brings the earlier messages back, read-only. Only words are
kept: what the person asked, what the assistant answered, the plan it ran and how it ended.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from instructir_desktop.editing.conversation import Run, RunState
from instructir_desktop.editing.replies import plan_line

# The project attachment that holds the conversation (``history.project`` "extra").
TRANSCRIPT_KEY = "conversation.json"
# Enough for any real conversation; a damaged or hostile file cannot make the chat draw without end.
MAX_ENTRIES = 2000
MAX_TEXT = 4000


@dataclass(frozen=True)
class TranscriptEntry:
    """One message and its answer, as words."""

    message: str
    reply: str
    plan: str = ""  # "Remove noise, then Brighten low light" ("" : no plan)
    status: str = ""  # how it ended ("Done in 2.1 s on CPU.", "Cancelled.")


def entry_of(run: Run) -> TranscriptEntry | None:
    """``run`` as words (None: it had not ended, so it says nothing yet)."""
    if not run.ended:
        return None
    plan = plan_line(run.reply.plan) if run.reply.plan and run.state is not RunState.NOTHING else ""
    return TranscriptEntry(run.text, run.reply.text, plan, run.reply.status)


def transcript_of(earlier: Iterable[TranscriptEntry], runs: Iterable[Run]) -> tuple[TranscriptEntry, ...]:
    """The whole conversation about a photo: what came with it (a reopened project's) and its runs since."""
    entries = list(earlier)
    for run in runs:
        entry = entry_of(run)
        if entry is not None:
            entries.append(entry)
    return tuple(entries[-MAX_ENTRIES:])


def encode_transcript(entries: Iterable[TranscriptEntry]) -> bytes:
    records = [{"message": e.message, "reply": e.reply, "plan": e.plan, "status": e.status} for e in entries]
    return json.dumps({"version": 1, "entries": records}, ensure_ascii=False).encode("utf-8")


def decode_transcript(data: bytes | None) -> tuple[TranscriptEntry, ...]:
    """The entries saved by ``encode_transcript``; anything unreadable is left out (the photo and its
    history are what matter, a damaged conversation only loses its words)."""
    if not data:
        return ()
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return ()
    entries = record.get("entries") if isinstance(record, dict) else None
    if not isinstance(entries, list):
        return ()
    kept = []
    for item in entries[-MAX_ENTRIES:]:
        if not isinstance(item, dict):
            continue
        fields = [item.get(key, "") for key in ("message", "reply", "plan", "status")]
        if all(isinstance(value, str) for value in fields):
            kept.append(TranscriptEntry(*(value[:MAX_TEXT] for value in fields)))
    return tuple(kept)

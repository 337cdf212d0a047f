"""A plugin host that records every ``execute`` call (the one way any action runs) and then runs it."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from instructir_desktop.plugins.api import HostServices
from instructir_desktop.plugins.host import PluginHost
from instructir_desktop.plugins.outcome import ActionInput, ActionOutcome


@dataclass(eq=False)
class Call:
    action_id: str
    given: ActionInput
    params: dict[str, object]
    thread: threading.Thread
    outcome: ActionOutcome | None = None
    error: BaseException | None = field(default=None, repr=False)


class RecordingHost(PluginHost):
    def __init__(self, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.calls: list[Call] = []

    def execute(
        self,
        action_id: str,
        given: ActionInput,
        params: Mapping[str, object] | None = None,
        services: HostServices | None = None,
    ) -> ActionOutcome:
        call = Call(action_id, given, dict(params or {}), threading.current_thread())
        self.calls.append(call)
        try:
            call.outcome = super().execute(action_id, given, params, services)
        except BaseException as error:
            call.error = error
            raise
        return call.outcome

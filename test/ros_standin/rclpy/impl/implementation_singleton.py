"""Stand-in for rclpy's C extension: the lifecycle parts (``rclpy_implementation``).

Real rclpy gets these from ``_rclpy_pybind11`` (C++ over rcl_lifecycle), which has no Python
source; the stand-in emulates them in Python from rcl_lifecycle's default state machine:

* ``TransitionCallbackReturnType``: SUCCESS, FAILURE, ERROR (the values of
  ``lifecycle_msgs/Transition`` TRANSITION_CALLBACK_*) and ``to_label()``, which names the
  transition a callback's result takes (``transition_success`` ...);
* ``LifecycleStateMachine``: the four primary and six transition states of
  ``lifecycle_msgs/State``, the transitions of rcl's default state machine with their ids
  and labels, ``trigger_transition_by_id`` / ``_by_label`` refusing a transition the current
  state does not have with ``RCLError``, as rcl does;
* ``RCLError``.
"""

from __future__ import annotations

import enum
from types import SimpleNamespace
from typing import Any

from lifecycle_msgs.msg import State, Transition

__all__ = ["rclpy_implementation"]


class RCLError(RuntimeError):
    """What rclpy's C extension raises for a failing rcl call."""


class TransitionCallbackReturnType(enum.Enum):
    """Result of a transition callback (pybind11 enum in real rclpy)."""

    SUCCESS = Transition.TRANSITION_CALLBACK_SUCCESS
    FAILURE = Transition.TRANSITION_CALLBACK_FAILURE
    ERROR = Transition.TRANSITION_CALLBACK_ERROR

    def to_label(self) -> str:
        """The label of the transition this result takes out of a transition state."""
        return f"transition_{self.name.lower()}"


_LABELS = {
    State.PRIMARY_STATE_UNKNOWN: "unknown",
    State.PRIMARY_STATE_UNCONFIGURED: "unconfigured",
    State.PRIMARY_STATE_INACTIVE: "inactive",
    State.PRIMARY_STATE_ACTIVE: "active",
    State.PRIMARY_STATE_FINALIZED: "finalized",
    State.TRANSITION_STATE_CONFIGURING: "configuring",
    State.TRANSITION_STATE_CLEANINGUP: "cleaningup",
    State.TRANSITION_STATE_SHUTTINGDOWN: "shuttingdown",
    State.TRANSITION_STATE_ACTIVATING: "activating",
    State.TRANSITION_STATE_DEACTIVATING: "deactivating",
    State.TRANSITION_STATE_ERRORPROCESSING: "errorprocessing",
}


def _transitions() -> list[tuple[int, str, int, int]]:
    """(transition id, label, start state id, goal state id) of rcl's default machine."""
    t = Transition
    unconfigured, inactive = State.PRIMARY_STATE_UNCONFIGURED, State.PRIMARY_STATE_INACTIVE
    active, finalized = State.PRIMARY_STATE_ACTIVE, State.PRIMARY_STATE_FINALIZED
    configuring = State.TRANSITION_STATE_CONFIGURING
    cleaningup = State.TRANSITION_STATE_CLEANINGUP
    activating = State.TRANSITION_STATE_ACTIVATING
    deactivating = State.TRANSITION_STATE_DEACTIVATING
    shuttingdown = State.TRANSITION_STATE_SHUTTINGDOWN
    errorprocessing = State.TRANSITION_STATE_ERRORPROCESSING
    table = [
        (t.TRANSITION_CONFIGURE, "configure", unconfigured, configuring),
        (t.TRANSITION_CLEANUP, "cleanup", inactive, cleaningup),
        (t.TRANSITION_ACTIVATE, "activate", inactive, activating),
        (t.TRANSITION_DEACTIVATE, "deactivate", active, deactivating),
        (t.TRANSITION_UNCONFIGURED_SHUTDOWN, "shutdown", unconfigured, shuttingdown),
        (t.TRANSITION_INACTIVE_SHUTDOWN, "shutdown", inactive, shuttingdown),
        (t.TRANSITION_ACTIVE_SHUTDOWN, "shutdown", active, shuttingdown),
    ]
    # Where each transition state goes on its callback's SUCCESS and FAILURE (ERROR: always
    # error processing); shutdown finalizes either way.
    outcomes = {
        configuring: ("CONFIGURE", inactive, unconfigured),
        cleaningup: ("CLEANUP", unconfigured, inactive),
        activating: ("ACTIVATE", active, inactive),
        deactivating: ("DEACTIVATE", inactive, active),
        shuttingdown: ("SHUTDOWN", finalized, finalized),
    }
    for state, (name, success, failure) in outcomes.items():
        for result, goal in (
            ("SUCCESS", success),
            ("FAILURE", failure),
            ("ERROR", errorprocessing),
        ):
            transition_id = getattr(t, f"TRANSITION_ON_{name}_{result}")
            table.append((transition_id, f"transition_{result.lower()}", state, goal))
    # Error processing: SUCCESS recovers to unconfigured, anything else finalizes.
    for result, goal in (
        ("SUCCESS", unconfigured),
        ("FAILURE", finalized),
        ("ERROR", finalized),
    ):
        transition_id = getattr(t, f"TRANSITION_ON_ERROR_{result}")
        table.append(
            (
                transition_id,
                f"transition_{result.lower()}",
                errorprocessing,
                goal,
            )
        )
    return table


class LifecycleStateMachine:
    """rcl_lifecycle's default state machine (no services, no transition_event topic)."""

    def __init__(self, node_handle: Any, enable_com_interface: bool) -> None:
        del node_handle, enable_com_interface
        self._transitions = _transitions()
        self._state = State.PRIMARY_STATE_UNCONFIGURED
        self.initialized = True

    @property
    def current_state(self) -> tuple[int, str]:
        return self._state, _LABELS[self._state]

    @property
    def available_states(self) -> list[tuple[int, str]]:
        return list(_LABELS.items())

    def _describe(self, entry: tuple[int, str, int, int]) -> tuple[int, str, int, str, int, str]:
        transition_id, label, start, goal = entry
        return transition_id, label, start, _LABELS[start], goal, _LABELS[goal]

    @property
    def available_transitions(self) -> list[tuple[int, str, int, str, int, str]]:
        return [self._describe(e) for e in self._transitions if e[2] == self._state]

    @property
    def transition_graph(self) -> list[tuple[int, str, int, str, int, str]]:
        return [self._describe(e) for e in self._transitions]

    def _goal(self, matches: list[tuple[int, str, int, int]], asked: object) -> int:
        if not matches:
            raise RCLError(
                "Failed to trigger lifecycle state machine transition: "
                f"transition {asked!r} is not registered in state {_LABELS[self._state]}"
            )
        return matches[0][3]

    def get_transition_by_label(self, label: str) -> int:
        for transition_id, name, start, _ in self._transitions:
            if start == self._state and name == label:
                return transition_id
        raise RCLError(f"Failed to get transition by label {label!r}")

    def trigger_transition_by_id(self, transition_id: int, publish_update: bool) -> None:
        del publish_update
        matches = [e for e in self._transitions if e[2] == self._state and e[0] == transition_id]
        self._state = self._goal(matches, transition_id)

    def trigger_transition_by_label(self, label: str, publish_update: bool) -> None:
        del publish_update
        matches = [e for e in self._transitions if e[2] == self._state and e[1] == label]
        self._state = self._goal(matches, label)


rclpy_implementation = SimpleNamespace(
    RCLError=RCLError,
    TransitionCallbackReturnType=TransitionCallbackReturnType,
    LifecycleStateMachine=LifecycleStateMachine,
)

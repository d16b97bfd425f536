"""Stand-in rclpy.lifecycle.node: LifecycleNode over the emulated rcl state machine.

As in rclpy: each transition runs the node's ``on_<transition>`` callback with the state it
starts from; the callback's result picks the next state (SUCCESS, FAILURE, or ERROR into
error processing, where ``on_error`` decides between unconfigured and finalized); a callback
that raises counts as ERROR; the default callbacks pass the transition on to the managed
entities (lifecycle publishers), so an override must call ``super()`` for publishers to be
enabled on activate. A transition the current state does not have raises ``RCLError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from lifecycle_msgs.msg import State, Transition

from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node

from .managed_entity import ManagedEntity
from .publisher import LifecyclePublisher

TransitionCallbackReturn = _rclpy.TransitionCallbackReturnType


class LifecycleState(NamedTuple):
    label: str
    state_id: int


class LifecycleNodeMixin(ManagedEntity):
    """The lifecycle half of LifecycleNode (to be mixed with rclpy.node.Node)."""

    def __init__(
        self, *, enable_communication_interface: bool = True, callback_group: Any = None
    ) -> None:
        del callback_group  # the stand-in has no executor, so no services to group
        self._callbacks: dict[int, Callable[[LifecycleState], Any]] = {
            State.TRANSITION_STATE_CONFIGURING: self.on_configure,
            State.TRANSITION_STATE_CLEANINGUP: self.on_cleanup,
            State.TRANSITION_STATE_SHUTTINGDOWN: self.on_shutdown,
            State.TRANSITION_STATE_ACTIVATING: self.on_activate,
            State.TRANSITION_STATE_DEACTIVATING: self.on_deactivate,
            State.TRANSITION_STATE_ERRORPROCESSING: self.on_error,
        }
        self._managed_entities: set[ManagedEntity] = set()
        self._state_machine = _rclpy.LifecycleStateMachine(self, enable_communication_interface)

    # transitions, as ``ros2 lifecycle set`` asks for them
    def trigger_configure(self) -> Any:
        return self._standin_change_state(Transition.TRANSITION_CONFIGURE)

    def trigger_cleanup(self) -> Any:
        return self._standin_change_state(Transition.TRANSITION_CLEANUP)

    def trigger_shutdown(self) -> Any:
        by_state = {
            "unconfigured": Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
            "inactive": Transition.TRANSITION_INACTIVE_SHUTDOWN,
            "active": Transition.TRANSITION_ACTIVE_SHUTDOWN,
        }
        label = self._state_machine.current_state[1]
        if label not in by_state:
            raise _rclpy.RCLError("Shutdown transtion not possible")  # rclpy's spelling
        return self._standin_change_state(by_state[label])

    def trigger_activate(self) -> Any:
        return self._standin_change_state(Transition.TRANSITION_ACTIVATE)

    def trigger_deactivate(self) -> Any:
        return self._standin_change_state(Transition.TRANSITION_DEACTIVATE)

    def add_managed_entity(self, entity: ManagedEntity) -> None:
        if not isinstance(entity, ManagedEntity):
            raise TypeError("Expected a rclpy.lifecycle.ManagedEntity instance.")
        self._managed_entities.add(entity)

    def _standin_entities(self, callback_name: str, state: LifecycleState) -> Any:
        for entity in self._managed_entities:
            result = getattr(entity, callback_name)(state)
            if not isinstance(result, TransitionCallbackReturn):
                raise TypeError(
                    f"{callback_name}() return value of class {type(entity)} should be "
                    "`TransitionCallbackReturn`."
                )
            if result != TransitionCallbackReturn.SUCCESS:
                return result
        return TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: LifecycleState) -> Any:
        return self._standin_entities("on_configure", state)

    def on_cleanup(self, state: LifecycleState) -> Any:
        return self._standin_entities("on_cleanup", state)

    def on_shutdown(self, state: LifecycleState) -> Any:
        return self._standin_entities("on_shutdown", state)

    def on_activate(self, state: LifecycleState) -> Any:
        return self._standin_entities("on_activate", state)

    def on_deactivate(self, state: LifecycleState) -> Any:
        return self._standin_entities("on_deactivate", state)

    def on_error(self, state: LifecycleState) -> Any:
        return self._standin_entities("on_error", state)

    def create_lifecycle_publisher(self, *args: Any, **kwargs: Any) -> LifecyclePublisher:
        if "publisher_class" in kwargs:
            raise TypeError(
                "create_publisher() got an unexpected keyword argument 'publisher_class'"
            )
        publisher = Node.create_publisher(
            self,  # type: ignore[arg-type]
            *args,
            **kwargs,
            publisher_class=LifecyclePublisher,
        )
        self._managed_entities.add(publisher)
        return publisher  # type: ignore[return-value]

    def destroy_lifecycle_publisher(self, publisher: LifecyclePublisher) -> bool:
        self._managed_entities.discard(publisher)
        return Node.destroy_publisher(self, publisher)  # type: ignore[arg-type]

    def _standin_callback(self, state_id: int, previous: LifecycleState) -> Any:
        callback = self._callbacks.get(state_id)
        if callback is None:
            return TransitionCallbackReturn.SUCCESS
        try:
            return callback(previous)
        except Exception:  # rclpy turns an exception into ERROR, without a log line
            return TransitionCallbackReturn.ERROR

    def _standin_change_state(self, transition_id: int) -> Any:
        state_id, label = self._state_machine.current_state
        previous = LifecycleState(label=label, state_id=state_id)
        self._state_machine.trigger_transition_by_id(transition_id, True)
        result = self._standin_callback(self._state_machine.current_state[0], previous)
        self._state_machine.trigger_transition_by_label(result.to_label(), True)
        if result == TransitionCallbackReturn.ERROR:
            handled = self._standin_callback(self._state_machine.current_state[0], previous)
            self._state_machine.trigger_transition_by_label(handled.to_label(), True)
        return result


class LifecycleNode(LifecycleNodeMixin, Node):
    """A managed node: rclpy.node.Node plus the lifecycle state machine."""

    def __init__(
        self, node_name: str, *, enable_communication_interface: bool = True, **kwargs: Any
    ) -> None:
        Node.__init__(self, node_name, **kwargs)
        LifecycleNodeMixin.__init__(
            self, enable_communication_interface=enable_communication_interface
        )

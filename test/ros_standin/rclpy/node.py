"""rclpy.node.Node essentials: parameters, publishers, subscriptions, timers, clock."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from rclpy.clock import Clock, ClockType
from rclpy.exceptions import (
    InvalidParameterTypeException,
    InvalidParameterValueException,
    ParameterAlreadyDeclaredException,
    ParameterNotDeclaredException,
    ParameterUninitializedException,
)
from rclpy.graph import GRAPH
from rclpy.logging import Logger
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile


class Publisher:
    def __init__(self, msg_type: type, topic_name: str, qos: QoSProfile) -> None:
        self.msg_type = msg_type
        self.topic_name = topic_name
        self.qos = qos
        self.published = 0

    def publish(self, msg: Any) -> None:
        if not isinstance(msg, self.msg_type):
            raise TypeError(f"Expected {self.msg_type.__name__}, got {type(msg).__name__}")
        self.published += 1
        GRAPH.deliver(self, msg)

    def get_subscription_count(self) -> int:
        return len(GRAPH.matched(self))


class Subscription:
    def __init__(
        self, msg_type: type, topic_name: str, callback: Callable[[Any], None], qos: QoSProfile
    ) -> None:
        self.msg_type = msg_type
        self.topic_name = topic_name
        self.callback = callback
        self.qos = qos


class Timer:
    def __init__(self, period_sec: float, callback: Callable[[], None], clock: Clock) -> None:
        self.timer_period_ns = int(period_sec * 1e9)
        self.callback = callback
        self.clock = clock

    def cancel(self) -> None:
        pass


def _resolve(namespace: str, name: str, topic: str) -> str:
    if topic.startswith("/"):
        return topic
    if topic.startswith("~"):
        topic = f"{name}{topic[1:]}"
    return f"{namespace.rstrip('/')}/{topic}"


class Node:
    def __init__(
        self,
        node_name: str,
        *,
        namespace: str | None = None,
        parameter_overrides: list[Parameter] | None = None,
        **_: Any,
    ) -> None:
        self._name = node_name
        self._namespace = namespace if namespace else "/"
        if not self._namespace.startswith("/"):
            self._namespace = "/" + self._namespace
        self._parameter_overrides = {p.name: p for p in parameter_overrides or []}
        self._parameters: dict[str, Parameter] = {}
        self._descriptors: dict[str, Any] = {}  # read by tests
        # rclpy's name (LifecycleNodeMixin uses _callbacks for its transitions)
        self._parameters_callbacks: list[Callable[[list[Parameter]], Any]] = []
        self._logger = Logger(node_name)
        self._clock = Clock(clock_type=ClockType.ROS_TIME)
        self.publishers: list[Publisher] = []
        self.subscriptions: list[Subscription] = []
        self.timers: list[Timer] = []
        self.destroyed = False

    # names, logging, clock
    def get_name(self) -> str:
        return self._name

    def get_namespace(self) -> str:
        return self._namespace

    def get_logger(self) -> Logger:
        return self._logger

    def get_clock(self) -> Clock:
        return self._clock

    # parameters: the checks and reasons of rclpy/node.py (Jazzy) _apply_descriptor
    def _apply_descriptor(
        self, parameter: Parameter, descriptor: Any, check_read_only: bool = True
    ) -> Any:
        from rcl_interfaces.msg import SetParametersResult

        def refused(reason: str) -> Any:
            return SetParametersResult(successful=False, reason=reason)

        if check_read_only and descriptor.read_only:
            return refused(f"Trying to set a read-only parameter: {parameter.name}.")
        if parameter.type_ != Parameter.Type.NOT_SET and parameter.type_ != descriptor.type:
            expected = Parameter.Type(descriptor.type).name
            given = parameter.type_.name
            return refused(f"Wrong parameter type, expected 'Type.{expected}' got 'Type.{given}'")
        value = parameter.value
        if parameter.type_ == Parameter.Type.INTEGER and descriptor.integer_range:
            # Only the first range counts; the ends are always allowed, then the step.
            bounds = descriptor.integer_range[0]
            low = min(bounds.from_value, bounds.to_value)
            high = max(bounds.from_value, bounds.to_value)
            if value in (low, high):
                return SetParametersResult(successful=True)
            if not low < value < high:
                return refused(
                    f"Parameter {parameter.name} out of range. "
                    f"Min: {low}, Max: {high}, value: {value}"
                )
            if bounds.step != 0 and (value - low) % bounds.step != 0:
                return refused(
                    f"The parameter value for {parameter.name} is not a valid step. "
                    f"Min: {low}, max: {high}, value: {value}, step: {bounds.step}"
                )
        if parameter.type_ == Parameter.Type.DOUBLE and descriptor.floating_point_range:
            bounds = descriptor.floating_point_range[0]
            low = min(bounds.from_value, bounds.to_value)
            high = max(bounds.from_value, bounds.to_value)
            if math.isclose(value, low, rel_tol=1e-6) or math.isclose(value, high, rel_tol=1e-6):
                return SetParametersResult(successful=True)
            if not low < value < high:
                return refused(
                    f"Parameter {parameter.name} out of range "
                    f"Min: {low}, Max: {high}, value: {value}"
                )
        return SetParametersResult(successful=True)

    def declare_parameter(
        self, name: str, value: Any = None, descriptor: Any = None, ignore_override: bool = False
    ) -> Parameter:
        from rcl_interfaces.msg import ParameterDescriptor

        if name in self._parameters:
            raise ParameterAlreadyDeclaredException([name])
        descriptor = descriptor if descriptor is not None else ParameterDescriptor()
        descriptor.type = int(Parameter.Type.from_parameter_value(value))
        parameter = Parameter(name, value=value)
        if name in self._parameter_overrides and not ignore_override:
            # An override of type NOT_SET (`-p name:=[]` on the command line) declares the
            # parameter without a value; get_parameter() then raises.
            parameter = self._parameter_overrides[name]
        result = self._apply_descriptor(parameter, descriptor, check_read_only=False)
        if not result.successful:
            if result.reason.startswith("Wrong parameter type"):
                raise InvalidParameterTypeException(
                    name,
                    parameter.value,
                    Parameter.Type.from_parameter_value(parameter.value).name,
                    Parameter.Type(descriptor.type).name,
                )
            raise InvalidParameterValueException(name, parameter.value, result.reason)
        self._parameters[name] = parameter
        self._descriptors[name] = descriptor
        return parameter

    def get_parameter(self, name: str) -> Parameter:
        if name not in self._parameters:
            raise ParameterNotDeclaredException(name)
        if self._parameters[name].type_ == Parameter.Type.NOT_SET:
            raise ParameterUninitializedException(name)
        return self._parameters[name]

    def add_on_set_parameters_callback(self, callback: Callable[[list[Parameter]], Any]) -> None:
        self._parameters_callbacks.insert(0, callback)

    def remove_on_set_parameters_callback(self, callback: Callable[[list[Parameter]], Any]) -> None:
        self._parameters_callbacks.remove(callback)

    def set_parameters(self, parameter_list: list[Parameter]) -> list[Any]:
        from rcl_interfaces.msg import SetParametersResult

        results = []
        for parameter in parameter_list:
            if parameter.name not in self._parameters:
                raise ParameterNotDeclaredException(parameter.name)
            result = self._apply_descriptor(parameter, self._descriptors[parameter.name])
            if not result.successful:
                results.append(result)
                continue
            result = SetParametersResult(successful=True)
            for callback in self._parameters_callbacks:
                result = callback([parameter])
                if not result.successful:
                    break
            if result.successful:
                self._parameters[parameter.name] = parameter
            results.append(result)
        return results

    # topics
    def create_publisher(
        self,
        msg_type: type,
        topic: str,
        qos_profile: QoSProfile | int,
        *,
        qos_overriding_options: Any = None,
        publisher_class: type[Publisher] = Publisher,
        **_: Any,
    ) -> Publisher:
        qos = qos_profile if isinstance(qos_profile, QoSProfile) else QoSProfile(depth=qos_profile)
        resolved = _resolve(self._namespace, self._name, topic)
        if qos_overriding_options is not None:
            from rclpy.qos_overriding_options import declare_qos_parameters

            declare_qos_parameters("publisher", self, resolved, qos, qos_overriding_options)
        publisher = publisher_class(msg_type, resolved, qos)
        GRAPH.publishers[publisher.topic_name].append(publisher)
        self.publishers.append(publisher)
        return publisher

    def destroy_publisher(self, publisher: Publisher) -> bool:
        GRAPH.publishers[publisher.topic_name].remove(publisher)
        self.publishers.remove(publisher)
        return True

    def create_subscription(
        self,
        msg_type: type,
        topic: str,
        callback: Callable[[Any], None],
        qos_profile: QoSProfile | int,
        *,
        qos_overriding_options: Any = None,
        **_: Any,
    ) -> Subscription:
        qos = qos_profile if isinstance(qos_profile, QoSProfile) else QoSProfile(depth=qos_profile)
        resolved = _resolve(self._namespace, self._name, topic)
        if qos_overriding_options is not None:
            from rclpy.qos_overriding_options import declare_qos_parameters

            declare_qos_parameters("subscription", self, resolved, qos, qos_overriding_options)
        subscription = Subscription(msg_type, resolved, callback, qos)
        GRAPH.subscriptions[subscription.topic_name].append(subscription)
        self.subscriptions.append(subscription)
        return subscription

    def destroy_subscription(self, subscription: Subscription) -> bool:
        GRAPH.subscriptions[subscription.topic_name].remove(subscription)
        self.subscriptions.remove(subscription)
        return True

    def create_timer(
        self,
        timer_period_sec: float,
        callback: Callable[[], None],
        callback_group: Any = None,
        clock: Clock | None = None,
    ) -> Timer:
        timer = Timer(timer_period_sec, callback, clock or self._clock)
        self.timers.append(timer)
        return timer

    def destroy_timer(self, timer: Timer) -> bool:
        if timer not in self.timers:
            return False
        timer.cancel()
        self.timers.remove(timer)
        return True

    def destroy_node(self) -> None:
        for timer in list(self.timers):
            self.destroy_timer(timer)
        for publisher in list(self.publishers):
            self.destroy_publisher(publisher)
        for subscription in list(self.subscriptions):
            self.destroy_subscription(subscription)
        self.destroyed = True

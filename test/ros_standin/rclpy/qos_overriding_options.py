"""QoS overrides from parameters, as rclpy/qos_overriding_options.py (Jazzy) does them.

Each policy kind asked for becomes a read-only parameter
``qos_overrides.<resolved topic>.<publisher|subscription>.<policy>`` whose default is the
entity's QoS; a value given at start-up (a params file, ``-p``) replaces that policy. An
entity created again later (a publisher switched off and on) reads the declared parameter.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rclpy import qos as qos_module
from rclpy.exceptions import ParameterAlreadyDeclaredException
from rclpy.qos import QoSPolicyKind, QoSProfile

__all__ = ["QoSOverridingOptions", "declare_qos_parameters"]

_ENUM_POLICIES = (QoSPolicyKind.RELIABILITY, QoSPolicyKind.HISTORY, QoSPolicyKind.DURABILITY)
_SUPPORTED = (*_ENUM_POLICIES, QoSPolicyKind.DEPTH)


class QoSOverridingOptions:
    def __init__(
        self, policy_kinds: Iterable[QoSPolicyKind], *, callback: Any = None, entity_id: Any = None
    ) -> None:
        self.policy_kinds = tuple(policy_kinds)
        self.callback = callback
        self.entity_id = entity_id

    @classmethod
    def with_default_policies(
        cls, *, callback: Any = None, entity_id: Any = None
    ) -> QoSOverridingOptions:
        return cls(
            (QoSPolicyKind.HISTORY, QoSPolicyKind.DEPTH, QoSPolicyKind.RELIABILITY),
            callback=callback,
            entity_id=entity_id,
        )


def declare_qos_parameters(
    kind: str, node: Any, topic_name: str, qos: QoSProfile, options: QoSOverridingOptions
) -> None:
    """Declare the override parameters of one entity and apply them to ``qos`` in place."""
    from rcl_interfaces.msg import ParameterDescriptor

    suffix = "" if options.entity_id is None else f"_{options.entity_id}"
    for policy in options.policy_kinds:
        if policy not in _SUPPORTED:
            raise NotImplementedError(f"the stand-in does not override {policy.name}")
        policy_name = policy.name.lower()
        name = f"qos_overrides.{topic_name}.{kind}{suffix}.{policy_name}"
        current = getattr(qos, policy_name)
        default = current.name.lower() if policy in _ENUM_POLICIES else current
        descriptor = ParameterDescriptor(
            description=f"{policy_name} for {kind} `{topic_name}` with id `{options.entity_id}`",
            read_only=True,
        )
        try:
            value = node.declare_parameter(name, default, descriptor).value
        except ParameterAlreadyDeclaredException:
            value = node.get_parameter(name).value
        if policy in _ENUM_POLICIES:
            enum_class = getattr(qos_module, f"{policy_name.capitalize()}Policy")
            try:
                value = enum_class[value.upper()]
            except KeyError:
                raise RuntimeError(
                    f"Unexpected QoS override for policy `{policy_name}`: `{value}`"
                ) from None
        setattr(qos, policy_name, value)
    if options.callback is not None:
        result = options.callback(qos)
        if not result.successful:
            raise RuntimeError(f"QoS overrides for {topic_name} are not valid: {result.reason}")

"""Which launch arguments become node parameters, and how (ROS-free, used by the launch files).

``ros2 launch`` hands a node its parameters in order, and a later source wins: a dictionary of
argument values placed after ``params_file`` would override every value of that file, even
when the user never typed the argument (its default is still a value). So each argument
that maps onto a parameter defaults to the empty string, which means "as the params file
says", and only the arguments actually given are passed on.

``managed`` picks the node: the plain one configures and activates itself; the managed
(lifecycle) one waits for ``ros2 lifecycle set`` or a lifecycle manager.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "EXECUTABLES",
    "FROM_PARAMS_FILE",
    "MANAGED_CHOICES",
    "PARAMETER_ARGUMENTS",
    "is_managed",
    "node_parameter_overrides",
]

# The value of an argument the user did not give: keep the params file's value.
FROM_PARAMS_FILE = ""

# launch argument -> dotted node parameter it overrides.
PARAMETER_ARGUMENTS: Mapping[str, str] = {
    "image_topic": "node.image_topics",
    "input_transport": "node.input_transport",
    "model_file_path": "model.model_file_path",
    "engine_file_path": "model.engine_file_path",
    "backend": "backend.name",
}


# The values of the ``managed`` launch argument, its default first.
MANAGED_CHOICES = ("false", "true")

# managed or not -> the console script (setup.py) that runs the node.
EXECUTABLES: Mapping[bool, str] = {False: "panoptic_node", True: "panoptic_lifecycle_node"}


def is_managed(value: str) -> bool:
    """Whether the ``managed`` launch argument asks for the lifecycle node.

    Args:
        value: The argument's performed value, one of ``MANAGED_CHOICES``.

    Raises:
        ValueError: Any other value (launch checks ``choices`` first; this is the backstop).
    """
    if value not in MANAGED_CHOICES:
        raise ValueError(f"managed must be one of {', '.join(MANAGED_CHOICES)}, got {value!r}")
    return value == "true"


def node_parameter_overrides(arguments: Mapping[str, str]) -> dict[str, str | list[str]]:
    """Map the launch arguments that were given onto node parameters.

    Args:
        arguments: Launch argument name -> its performed value (``FROM_PARAMS_FILE`` when not
            given); names outside ``PARAMETER_ARGUMENTS`` are ignored.

    Returns:
        Dotted parameter name -> value, only for arguments with a value. ``image_topic`` gives
        a one-camera ``node.image_topics`` list.
    """
    overrides: dict[str, str | list[str]] = {}
    for argument, parameter in PARAMETER_ARGUMENTS.items():
        value = arguments.get(argument, FROM_PARAMS_FILE).strip()
        if value == FROM_PARAMS_FILE:
            continue
        overrides[parameter] = [value] if argument == "image_topic" else value
    return overrides

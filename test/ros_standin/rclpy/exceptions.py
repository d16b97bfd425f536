"""rclpy.exceptions used by parameter handling, with rclpy's messages (Jazzy, checked)."""

from __future__ import annotations

from typing import Any


class ParameterException(Exception):  # noqa: N818
    def __init__(self, error_msg: str, parameters: Any) -> None:
        super().__init__(f"{error_msg}: {parameters}")


class InvalidParameterTypeException(ParameterException):
    def __init__(self, name: str, value: Any, value_type: str, expected_type: str) -> None:
        super().__init__(
            f"Trying to set parameter '{name}' to '{value}' of type '{value_type}', "
            f"expecting type '{expected_type}'",
            name,
        )


class InvalidParameterValueException(ParameterException):
    def __init__(self, name: str, value: Any, reason: str) -> None:
        super().__init__(f"Invalid parameter value ({value}) for parameter. Reason: {reason}", name)


class ParameterNotDeclaredException(ParameterException):
    def __init__(self, parameters: Any) -> None:
        super().__init__("Invalid access to undeclared parameter(s)", parameters)


class ParameterAlreadyDeclaredException(ParameterException):
    def __init__(self, parameters: Any) -> None:
        super().__init__("Parameter(s) already declared", parameters)


class ParameterUninitializedException(ParameterException):
    """A parameter declared without a value (``-p name:=[]``: rcl cannot type an empty list)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"The parameter '{name}' is not initialized", name)

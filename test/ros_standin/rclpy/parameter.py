"""rclpy.parameter.Parameter essentials (type inferred from the value, as rclpy does)."""

from __future__ import annotations

import enum
from typing import Any


class Parameter:
    class Type(enum.IntEnum):
        NOT_SET = 0
        BOOL = 1
        INTEGER = 2
        DOUBLE = 3
        STRING = 4
        BYTE_ARRAY = 5
        BOOL_ARRAY = 6
        INTEGER_ARRAY = 7
        DOUBLE_ARRAY = 8
        STRING_ARRAY = 9

        @classmethod
        def from_parameter_value(cls, value: Any) -> Parameter.Type:
            if value is None:
                return cls.NOT_SET
            if isinstance(value, bool):
                return cls.BOOL
            if isinstance(value, int):
                return cls.INTEGER
            if isinstance(value, float):
                return cls.DOUBLE
            if isinstance(value, str):
                return cls.STRING
            if isinstance(value, (list, tuple)):
                # rclpy's order: an empty list is a BYTE_ARRAY (all() of nothing is True).
                if all(isinstance(v, bytes) for v in value):
                    return cls.BYTE_ARRAY
                if all(isinstance(v, bool) for v in value):
                    return cls.BOOL_ARRAY
                if all(isinstance(v, int) for v in value):
                    return cls.INTEGER_ARRAY
                if all(isinstance(v, float) for v in value):
                    return cls.DOUBLE_ARRAY
                if all(isinstance(v, str) for v in value):
                    return cls.STRING_ARRAY
            raise TypeError(f"The given value is not one of the allowed types '{value!r}'.")

    def __init__(self, name: str, type_: Any = None, value: Any = None) -> None:
        if isinstance(type_, Parameter.Type):
            self.type_ = type_
        else:  # Parameter(name, value) positional form, as rclpy allows
            value = type_ if value is None else value
            self.type_ = Parameter.Type.from_parameter_value(value)
        self.name = name
        self.value = list(value) if isinstance(value, tuple) else value

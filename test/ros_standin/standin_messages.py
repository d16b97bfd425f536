"""Message classes with rclpy semantics, generated from the rosbags typestore."""

from __future__ import annotations

import array
from typing import Any

import numpy as np

from panoptic_ros.bags import make_typestore

TYPESTORE = make_typestore()
_INT_RANGES = {
    "int8": (-(2**7), 2**7 - 1),
    "uint8": (0, 2**8 - 1),
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
    "char": (0, 255),
}
_ARRAY_CODES = {
    "int8": "b",
    "uint8": "B",
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
}
_CLASSES: dict[str, type] = {}


def _check_base(typename: str, field: str, value: Any) -> Any:
    if typename in ("float32", "float64"):
        if not isinstance(value, float):
            raise AssertionError(f"The '{field}' field must be of type 'float'")
        return value
    if typename == "bool":
        if not isinstance(value, bool):
            raise AssertionError(f"The '{field}' field must be of type 'bool'")
        return value
    if typename == "string":
        if not isinstance(value, str):
            raise AssertionError(f"The '{field}' field must be of type 'str'")
        return value
    if typename == "byte":
        if not (isinstance(value, bytes) and len(value) == 1):
            raise AssertionError(f"The '{field}' field must be of type 'bytes' with length 1")
        return value
    low, high = _INT_RANGES[typename]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise AssertionError(f"The '{field}' field must be an integer in [{low}, {high}]")
    return value


def _default(spec: Any) -> Any:
    kind, detail = spec
    kind = int(kind)
    if kind == 1:
        typename = detail[0]
        return {"string": "", "bool": False, "float32": 0.0, "float64": 0.0, "byte": b"\x00"}.get(
            typename, 0
        )
    if kind == 2:
        return message_class(detail)()
    inner, size = detail
    if int(inner[0]) == 1 and inner[1][0] in _ARRAY_CODES:
        if kind == 3:
            return np.zeros(size, dtype=np.dtype(inner[1][0]))
        return array.array(_ARRAY_CODES[inner[1][0]])
    if kind == 3:
        return [_default(inner) for _ in range(size)]
    return []


def _check(spec: Any, field: str, value: Any) -> Any:
    kind, detail = spec
    kind = int(kind)
    if kind == 1:
        return _check_base(detail[0], field, value)
    if kind == 2:
        if not isinstance(value, message_class(detail)):
            raise AssertionError(f"The '{field}' field must be a sub message of type '{detail}'")
        return value
    inner, size = detail
    if int(inner[0]) == 1 and inner[1][0] in _ARRAY_CODES:
        code = _ARRAY_CODES[inner[1][0]]
        if kind == 3:
            values = np.asarray(value, dtype=np.dtype(inner[1][0]))
            if values.shape != (size,):
                raise AssertionError(f"The '{field}' field must have {size} elements")
            return values
        if isinstance(value, array.array):
            if value.typecode != code:
                raise AssertionError(
                    f"The '{field}' array.array() must have the type code '{code}'"
                )
            return value
        return array.array(code, [_check_base(inner[1][0], field, v) for v in value])
    values = list(value)
    if kind == 3 and len(values) != size:
        raise AssertionError(f"The '{field}' field must have {size} elements")
    if kind == 4 and size and len(values) > size:
        raise AssertionError(f"The '{field}' field holds at most {size} elements")
    return [_check(inner, field, v) for v in values]


def message_class(typename: str) -> type:
    """The rclpy-like class of ``typename`` (e.g. ``sensor_msgs/msg/Image``)."""
    if typename in _CLASSES:
        return _CLASSES[typename]
    constants, fields = TYPESTORE.fielddefs[typename]
    specs = dict(fields)

    def __init__(self: Any, **kwargs: Any) -> None:
        unknown = set(kwargs) - set(specs)
        if unknown:
            raise AssertionError(
                f"Invalid arguments passed to constructor: {', '.join(sorted(unknown))}"
            )
        for name, spec in specs.items():
            setattr(self, name, kwargs[name] if name in kwargs else _default(spec))

    def __setattr__(self: Any, name: str, value: Any) -> None:
        if name not in specs:
            raise AttributeError(f"'{typename}' has no field '{name}'")
        object.__setattr__(self, name, _check(specs[name], name, value))

    def __eq__(self: Any, other: object) -> bool:
        if type(other) is not type(self):
            return False
        return all(_equal(getattr(self, n), getattr(other, n)) for n in specs)

    namespace: dict[str, Any] = {
        "__init__": __init__,
        "__setattr__": __setattr__,
        "__eq__": __eq__,
        "__slots__": tuple(specs),
        "_TYPE": typename,
        "_FIELDS": specs,
        "__repr__": lambda self: (
            f"{typename}({', '.join(f'{n}={getattr(self, n)!r}' for n in specs)})"
        ),
    }
    for constant_name, _, constant_value in constants:
        namespace[constant_name] = constant_value
    cls = type(typename.rsplit("/", 1)[1], (), namespace)
    _CLASSES[typename] = cls
    return cls


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, (np.ndarray, array.array)):
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    return bool(a == b)


def to_rosbags(message: Any) -> Any:
    """Stand-in message -> rosbags dataclass (for CDR serialisation)."""
    typename = message._TYPE
    target = TYPESTORE.types[typename]
    values = {}
    for name, (kind, detail) in message._FIELDS.items():
        value = getattr(message, name)
        kind = int(kind)
        if kind == 1:
            values[name] = value[0] if detail[0] == "byte" else value
        elif kind == 2:
            values[name] = to_rosbags(value)
        else:
            inner = detail[0]
            if int(inner[0]) == 1 and inner[1][0] in _ARRAY_CODES:
                values[name] = np.asarray(value, dtype=np.dtype(inner[1][0])).copy()
            elif int(inner[0]) == 2:
                values[name] = [to_rosbags(v) for v in value]
            else:
                values[name] = list(value)
    return target(**values)


def from_rosbags(message: Any, typename: str) -> Any:
    """rosbags dataclass -> stand-in message (what a subscriber receives)."""
    cls = message_class(typename)
    values = {}
    for name, (kind, detail) in cls._FIELDS.items():  # type: ignore[attr-defined]
        value = getattr(message, name)
        kind = int(kind)
        if kind == 1:
            if detail[0] == "byte":
                value = bytes([int(value)])
            elif detail[0] in ("float32", "float64"):
                value = float(value)
            elif detail[0] not in ("string", "bool"):
                value = int(value)
            values[name] = value
        elif kind == 2:
            values[name] = from_rosbags(value, detail)
        else:
            inner = detail[0]
            if int(inner[0]) == 1 and inner[1][0] in _ARRAY_CODES:
                if kind == 3:
                    values[name] = np.asarray(value)
                else:
                    out = array.array(_ARRAY_CODES[inner[1][0]])
                    out.frombytes(np.ascontiguousarray(value).tobytes())
                    values[name] = out
            elif int(inner[0]) == 2:
                values[name] = [from_rosbags(v, inner[1]) for v in value]
            else:
                values[name] = list(value)
    return cls(**values)


def cdr_round_trip(message: Any) -> tuple[bytes, Any]:
    """Serialise like the middleware and deserialise into a fresh message."""
    typename = message._TYPE
    data = bytes(TYPESTORE.serialize_cdr(to_rosbags(message), typename))
    return data, from_rosbags(TYPESTORE.deserialize_cdr(data, typename), typename)


def module_namespace(package: str) -> dict[str, type]:
    """Every message class of ``package`` (for ``<package>/msg.py``)."""
    prefix = f"{package}/msg/"
    return {t[len(prefix) :]: message_class(t) for t in TYPESTORE.types if t.startswith(prefix)}

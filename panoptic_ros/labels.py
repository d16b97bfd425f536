"""Label spaces: class names, thing/stuff flags, colours, dataset ids and drivable classes.

A model carries its label space in its metadata; the configuration only chooses which of
those classes count as drivable. Nothing downstream (fusion, messages, overlays) names a
class literally: it asks the :class:`LabelSpace`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from panoptic_ros.errors import ConfigError

__all__ = ["CITYSCAPES", "IGNORE_INDEX", "ClassInfo", "LabelSpace"]

#: Value of "no class" in every semantic map (void, padding, removed small regions).
IGNORE_INDEX = 255


@dataclass(frozen=True, slots=True)
class ClassInfo:
    """One class of a label space.

    Attributes:
        name: Human-readable, unique name (``"car"``); also the Detection2D ``class_id``.
        is_thing: True for countable objects that get instances, False for "stuff".
        color_rgb: Display colour, (r, g, b) in 0..255.
        dataset_id: Id of the class in its dataset's panoptic files (Cityscapes labelId,
            COCO category id); used only when reading or writing those formats.
    """

    name: str
    is_thing: bool
    color_rgb: tuple[int, int, int]
    dataset_id: int

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready mapping (the model metadata format)."""
        return {
            "name": self.name,
            "isthing": self.is_thing,
            "color": list(self.color_rgb),
            "id": self.dataset_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassInfo:
        """Build from :meth:`to_dict` output (also accepts COCO-style ``categories`` rows)."""
        try:
            color = tuple(int(c) for c in data["color"])
            if len(color) != 3 or not all(0 <= c <= 255 for c in color):
                raise ValueError(f"colour {data['color']!r} is not three values in 0..255")
            return cls(
                name=str(data["name"]),
                is_thing=bool(data["isthing"]),
                color_rgb=(color[0], color[1], color[2]),
                dataset_id=int(data["id"]),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"invalid class entry {dict(data)!r}: {err}") from err


@dataclass(frozen=True, slots=True)
class LabelSpace:
    """An ordered set of classes; a class's index is its value in semantic maps.

    Attributes:
        classes: The classes, index = semantic value (0..C-1). 255 is void.
        drivable: Indices of the classes that form the drivable surface.
    """

    classes: tuple[ClassInfo, ...]
    drivable: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        names = [c.name for c in self.classes]
        if not names:
            raise ConfigError("a label space needs at least one class")
        if len(names) >= IGNORE_INDEX:
            raise ConfigError(f"at most {IGNORE_INDEX - 1} classes are supported, got {len(names)}")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(f"class names must be unique, repeated: {duplicates}")
        bad = [i for i in self.drivable if not 0 <= i < len(names)]
        if bad:
            raise ConfigError(f"drivable class indices {bad} are outside 0..{len(names) - 1}")

    @property
    def num_classes(self) -> int:
        """Number of classes C (semantic values 0..C-1)."""
        return len(self.classes)

    @property
    def names(self) -> tuple[str, ...]:
        """Class names in index order."""
        return tuple(c.name for c in self.classes)

    @property
    def thing_ids(self) -> tuple[int, ...]:
        """Indices of the thing classes."""
        return tuple(i for i, c in enumerate(self.classes) if c.is_thing)

    @property
    def stuff_ids(self) -> tuple[int, ...]:
        """Indices of the stuff classes."""
        return tuple(i for i, c in enumerate(self.classes) if not c.is_thing)

    def is_thing_table(self) -> npt.NDArray[np.bool_]:
        """Return [256] bool: True at thing class indices; 255 (void) and unused are False."""
        table = np.zeros(256, dtype=np.bool_)
        table[list(self.thing_ids)] = True
        return table

    def drivable_table(self) -> npt.NDArray[np.bool_]:
        """Return [256] bool: True at drivable class indices."""
        table = np.zeros(256, dtype=np.bool_)
        table[list(self.drivable)] = True
        return table

    def color_table(self, void_rgb: tuple[int, int, int] = (0, 0, 0)) -> npt.NDArray[np.uint8]:
        """Return [256, 3] uint8 RGB colours by semantic value; void and unused get ``void_rgb``."""
        table = np.empty((256, 3), dtype=np.uint8)
        table[:] = void_rgb
        for index, info in enumerate(self.classes):
            table[index] = info.color_rgb
        return table

    def index(self, name: str) -> int:
        """Return the index of the class called ``name``.

        Raises:
            ConfigError: No class has that name.
        """
        for i, info in enumerate(self.classes):
            if info.name == name:
                return i
        raise ConfigError(f"unknown class {name!r}; known classes: {', '.join(self.names)}")

    def with_drivable(self, names: Iterable[str]) -> LabelSpace:
        """Return a copy whose drivable classes are ``names``.

        Raises:
            ConfigError: A name is not a class of this label space.
        """
        return LabelSpace(self.classes, tuple(sorted({self.index(n) for n in names})))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready mapping: ``{"classes": [...], "drivable": [names]}``."""
        return {
            "classes": [c.to_dict() for c in self.classes],
            "drivable": [self.classes[i].name for i in self.drivable],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelSpace:
        """Build from :meth:`to_dict` output.

        Raises:
            ConfigError: The mapping is malformed.
        """
        rows = data.get("classes")
        if not isinstance(rows, Sequence) or isinstance(rows, str):
            raise ConfigError("label space needs a 'classes' list")
        space = cls(tuple(ClassInfo.from_dict(r) for r in rows))
        return space.with_drivable(data.get("drivable", ()))


def _cityscapes() -> LabelSpace:
    # The 19 Cityscapes training classes in trainId order (stuff first, then things),
    # with the official palette and labelIds used by the panoptic ground truth.
    rows: tuple[tuple[str, bool, tuple[int, int, int], int], ...] = (
        ("road", False, (128, 64, 128), 7),
        ("sidewalk", False, (244, 35, 232), 8),
        ("building", False, (70, 70, 70), 11),
        ("wall", False, (102, 102, 156), 12),
        ("fence", False, (190, 153, 153), 13),
        ("pole", False, (153, 153, 153), 17),
        ("traffic light", False, (250, 170, 30), 19),
        ("traffic sign", False, (220, 220, 0), 20),
        ("vegetation", False, (107, 142, 35), 21),
        ("terrain", False, (152, 251, 152), 22),
        ("sky", False, (70, 130, 180), 23),
        ("person", True, (220, 20, 60), 24),
        ("rider", True, (255, 0, 0), 25),
        ("car", True, (0, 0, 142), 26),
        ("truck", True, (0, 0, 70), 27),
        ("bus", True, (0, 60, 100), 28),
        ("train", True, (0, 80, 100), 31),
        ("motorcycle", True, (0, 0, 230), 32),
        ("bicycle", True, (119, 11, 32), 33),
    )
    space = LabelSpace(tuple(ClassInfo(n, t, c, i) for n, t, c, i in rows))
    return space.with_drivable(["road"])


#: Cityscapes' 19 training classes (11 stuff, 8 things); drivable = road.
CITYSCAPES = _cityscapes()

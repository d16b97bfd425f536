"""Pseudo-labelling: real frames + open teacher models -> a panoptic training dataset.

``frames`` reads bags, image folders and videos; ``teachers`` runs ONNX teachers from
their contract in a YAML file; ``labeller`` turns their outputs into panoptic labels and
soft targets; ``writer`` stores a Cityscapes-format dataset that ``train`` and ``eval``
read. Importing this package loads no ONNX Runtime: the teachers do when they are loaded.
"""

from __future__ import annotations

from panoptic_ros.pseudo.frames import BadFrame, Frame, FrameSource, Subsampling, open_sources
from panoptic_ros.pseudo.labeller import LabelSettings, PseudoLabel, PseudoLabeller
from panoptic_ros.pseudo.teachers import TeacherSet, TeacherSpec, load_teachers, read_teacher_specs
from panoptic_ros.pseudo.writer import PseudoDatasetWriter, frame_id

__all__ = [
    "BadFrame",
    "Frame",
    "FrameSource",
    "LabelSettings",
    "PseudoDatasetWriter",
    "PseudoLabel",
    "PseudoLabeller",
    "Subsampling",
    "TeacherSet",
    "TeacherSpec",
    "frame_id",
    "load_teachers",
    "open_sources",
    "read_teacher_specs",
]

"""Stand-in tf2_ros: a buffer of direct (and inverted) transforms fed by /tf and /tf_static."""

from __future__ import annotations


class LookupException(Exception):  # noqa: N818  (tf2's name)
    pass


class ExtrapolationException(Exception):  # noqa: N818  (tf2's name)
    pass

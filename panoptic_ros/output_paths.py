"""Where an output may be written: the one check every command and writer makes first.

An output must not be an input, lie inside one or contain one (the inputs are only ever
read), and an existing output is replaced only when the caller says so (``--overwrite``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from panoptic_ros.errors import ConfigError

__all__ = ["check_output"]


def check_output(output: Path, overwrite: bool, inputs: Sequence[Path] = ()) -> None:
    """Refuse an output that overlaps an input, and an existing one without ``overwrite``.

    Paths are compared resolved, so a symbolic link to an input counts as that input. A
    dangling link at ``output`` counts as an existing output.

    Args:
        output: The file or folder to be written.
        overwrite: An existing ``output`` may be replaced.
        inputs: Files or folders the command reads.

    Raises:
        ConfigError: The output is, lies inside or contains an input, or it exists and
            ``overwrite`` is False.
    """
    output = Path(output)
    resolved = output.resolve()
    for item in inputs:
        source = Path(item).resolve()
        if resolved == source:
            how = "the same path"
        elif resolved.is_relative_to(source):
            how = "inside it"
        elif source.is_relative_to(resolved):
            how = "contains it"
        else:
            continue
        raise ConfigError(
            f"output {str(output)!r} overlaps the input {str(item)!r} ({how}); choose another "
            "output (inputs are never replaced)"
        )
    if (output.exists() or output.is_symlink()) and not overwrite:
        raise ConfigError(f"output {str(output)!r} exists; pass --overwrite to replace it")

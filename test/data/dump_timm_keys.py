"""Write the state_dict key names and shapes of timm's ``tf_efficientnet_lite0``.

Run once in a throwaway environment with timm (never imported by the tests), and commit the
output as ``timm_tf_efficientnet_lite0_keys.txt``, the fixture of
``test_modeling.test_from_timm_names_maps_every_key_of_timm_lite0``::

    python -m venv /tmp/timm && /tmp/timm/bin/pip install torch==2.13.0 timm==1.0.31
    /tmp/timm/bin/python test/data/dump_timm_keys.py > test/data/timm_tf_efficientnet_lite0_keys.txt

The model is built with ``pretrained=False`` (no download; only names and shapes are kept).
timm imports torchvision at import time for its data transforms and FrozenBatchNorm2d, none
of which builds EfficientNet; where torchvision's wheel cannot load beside CPU torch (its
CUDA build), a stand-in module answers those imports (``--stub-torchvision``).
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any


class _AnyMeta(type):
    """Classes whose every attribute is another such class (enough for import-time use)."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _AnyMeta(name, (), {})


class _TorchvisionStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answer ``import torchvision[.x]`` with modules of :class:`_AnyMeta` attributes."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname.split(".", maxsplit=1)[0] != "torchvision":
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: Any) -> types.ModuleType:
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__version__ = "0.0"

        def attribute(name: str) -> Any:
            if name.startswith("__"):
                raise AttributeError(name)
            return _AnyMeta(name, (), {})

        module.__getattr__ = attribute
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: attributes are made on access."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stub-torchvision", action="store_true", help="see the module doc")
    args = parser.parse_args()
    if args.stub_torchvision:
        sys.meta_path.insert(0, _TorchvisionStandIn())
    import timm
    import torch

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    lines = [
        f"# state_dict keys and shapes of timm {timm.__version__}'s tf_efficientnet_lite0",
        f"# (pretrained=False, no download; torch {torch.__version__}), one 'key dim dim ...'",
        "# per line (a key without dims is a scalar). Written by test/data/dump_timm_keys.py:",
        "#   python -m venv /tmp/timm && /tmp/timm/bin/pip install torch==2.13.0 "
        f"timm=={timm.__version__}",
        "#   /tmp/timm/bin/python test/data/dump_timm_keys.py"
        + (" --stub-torchvision" if args.stub_torchvision else "")
        + " > test/data/timm_tf_efficientnet_lite0_keys.txt",
    ]
    for key, tensor in model.state_dict().items():
        lines.append(" ".join([key, *(str(d) for d in tensor.shape)]))
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

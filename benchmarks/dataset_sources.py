"""List where a pseudo-labelled dataset's frames come from, as a Markdown table.

Joins the dataset JSON's per-frame records (``pseudo_label.frames``: source name, path)
with the SOURCES.json files that describe the frame folders (repository, commit, licence,
dataset terms, scene type), and counts the frames per source and split. The model card's
data table is made with it:

    python benchmarks/dataset_sources.py pseudo/real --sources ../shared/data/frames/SOURCES.json \
        --sources frames_extra/SOURCES.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from panoptic_ros.pseudo.frames import source_name


def _describe(sources_files: list[Path]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for path in sources_files:
        for row in json.loads(path.read_text(encoding="utf-8")):
            rows[source_name(path.parent / row["folder"])] = row
    return rows


def main() -> int:
    """Print the table of sources of every split of the dataset."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--sources", type=Path, action="append", default=[])
    args = parser.parse_args()
    described = _describe(args.sources)
    counts: dict[str, Counter[str]] = {}
    for json_path in sorted((args.dataset / "gtFine").glob("cityscapes_panoptic_*.json")):
        split = json_path.stem.removeprefix("cityscapes_panoptic_")
        document = json.loads(json_path.read_text(encoding="utf-8"))
        counts[split] = Counter(f["name"] for f in document["pseudo_label"]["frames"])
    names = sorted({n for c in counts.values() for n in c})
    splits = sorted(counts)
    print("| source | repository @ commit | licence (repository) | data terms | scene | "
          + " | ".join(splits) + " |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in splits) + " |")
    for name in names:
        row = described.get(name, {})
        repo = row.get("repo") or row.get("repository") or "?"
        commit = str(row.get("commit", "?"))[:8]
        cells = [
            name,
            f"{repo} @ {commit}",
            str(row.get("licence_of_repo", "?")),
            str(row.get("dataset_terms", "?")),
            str(row.get("scene_type", "?")),
            *(str(counts[s].get(name, 0)) for s in splits),
        ]
        print("| " + " | ".join(cells) + " |")
    totals = " | ".join(str(sum(counts[s].values())) for s in splits)
    print(f"| total | | | | | {totals} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

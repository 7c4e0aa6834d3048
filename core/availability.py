"""What this machine can train with right now: datasets and backbones, as table rows for Home."""

from __future__ import annotations

from core import runs
from core.datasets import registry
from core.models import backbones


def dataset_rows() -> list[dict]:
    """One row per registered dataset: name, title, status and image counts per split."""
    rows = []
    for name in registry.dataset_names():
        info = registry.get_info(name)
        state = registry.status(name)
        per_class = registry.split_counts(name)["counts"] if state == "ready" else {}
        counts = {split: sum(values) for split, values in per_class.items()}
        rows.append({
            "dataset": name,
            "title": info.title,
            "status": "generated on demand" if info.synthetic and state != "ready" else state,
            "classes": info.num_classes,
            "images per split": ", ".join(f"{split} {count:,}" for split, count in counts.items()),
        })
    return rows


def backbone_rows() -> list[dict]:
    """One row per backbone source: ImageNet weights, local weights files, finished runs."""
    rows = []
    for backbone in backbones.BACKBONE_NAMES:
        cached = backbones.imagenet_weights_cached(backbone)
        rows.append({
            "backbone": f"{backbone} (ImageNet)",
            "status": "downloaded" if cached else "downloads on first use (needs internet)",
            "where": str(cached or backbones.keras_cache_dir()),
        })
        for path in backbones.discover_local_weights(backbone):
            rows.append({"backbone": f"{backbone} (local file)", "status": "ready", "where": str(path)})
    finished = [summary for summary in runs.list_runs() if summary.state == runs.COMPLETED]
    rows.append({
        "backbone": "finished runs",
        "status": f"{len(finished)} usable as source backbones",
        "where": str(runs.paths.runs_dir()),
    })
    return rows

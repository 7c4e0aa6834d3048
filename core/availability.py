"""What this machine can train with right now: datasets and backbones, as table rows for Home."""

from __future__ import annotations

from core import runs
from core.datasets import registry


def dataset_rows() -> list[dict]:
    """One row per registered dataset: name, title, status and image counts per split."""
    rows = []
    for name in registry.DATASET_NAMES:
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
    """One row per backbone and weights variant (installed or not, and from where), plus runs."""
    from core import weights

    rows = []
    for row in weights.rows():
        installed = row["status"] == "installed"
        rows.append({
            "backbone": f"{row['backbone']} ImageNet ({'with top' if row['variant'] == 'top' else 'no top'})",
            "status": (f"installed, works offline (alpha {row['alpha']})" if installed and row["alpha"]
                       else "installed, works offline" if installed else
                       "not installed: python -m core.weights get (online) or import a file"),
            "where": f"{row['path']} · {row['source']} · {row['installed_at']}" if installed else "",
        })
    finished = [summary for summary in runs.list_runs() if summary.state == runs.COMPLETED]
    rows.append({
        "backbone": "finished runs",
        "status": f"{len(finished)} usable as source backbones",
        "where": str(runs.paths.runs_dir()),
    })
    return rows

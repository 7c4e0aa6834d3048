"""Command line: ``python -m core.datasets get|create|info|delete|list``.

Examples::

    python -m core.datasets get gtsrb --from ../shared/datasets/gtsrb/GTSRB_Final_Training_Images.zip
    python -m core.datasets get gtsrb --from GTSRB_Final_Test_Images.zip --from GTSRB_Final_Test_GT.zip
    python -m core.datasets get dogs-vs-cats --from train.zip
    python -m core.datasets get dogs-vs-cats --variant microsoft     # download 825 MB
    python -m core.datasets get synthetic-signs                      # generate and cache
    python -m core.datasets info gtsrb
    python -m core.datasets delete dogs-vs-cats
    python -m core.datasets create pets --class cat=photos/cats --class dog=dogs.zip
    python -m core.datasets create objects --from my_photos/      # one sub-folder per class

``create`` builds a custom dataset from your own images: ``--class LABEL=PATH`` (repeatable; PATH
a folder, a zip or one image, and a label may repeat to add several paths) or ``--from FOLDER``
with one sub-folder per class. ``info``, ``delete`` and ``load`` then treat it like the others.

``--from`` takes an official zip, its extracted folder, or a folder holding the official zips,
and may repeat. Without ``--from``, ``get`` downloads the official files (progress on stderr).
Exit status: 0 on success, 1 on a dataset problem (with a message), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from core import paths
from core.datasets import background, base, custom, download, progress, registry


class _ProgressLine:
    """Prints ``phase: done/total`` on stderr, at most a few times a second."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.last = 0.0
        self.phase = None

    def __call__(self, phase, done, total):
        now = time.monotonic()
        if phase == self.phase and now - self.last < 0.5 and not (total and done >= total):
            return
        if phase != self.phase and self.phase is not None:
            self.stream.write("\n")
        self.phase, self.last = phase, now
        if phase.startswith("download"):
            amount = f"{download.human_bytes(done)}" + (f" of {download.human_bytes(total)} ({100 * done / total:.0f}%)" if total else "")
        else:
            amount = f"{done:,}" + (f" of {total:,}" if total else "")
        self.stream.write(f"\r{phase}: {amount}   ")
        self.stream.flush()


def command_get(arguments) -> int:
    from core import datasets

    name = arguments.name
    if not arguments.background and progress.is_running(name):
        raise base.DatasetError(f"a download/import of {name} is already running (see the Datasets page)")
    line = None if arguments.quiet else _ProgressLine()
    writer = progress.ProgressWriter(name, echo=line)
    started = time.perf_counter()
    try:
        datasets.get(name, arguments.sources or None, progress=writer, variant=arguments.variant)
    except base.DatasetError as error:
        writer.fail(str(error))
        raise
    except BaseException as error:
        writer.fail(f"{type(error).__name__}: {error}")
        raise
    finally:
        for path in arguments.cleanup or []:
            _remove_upload(path)
    seconds = time.perf_counter() - started
    if line is not None:
        sys.stderr.write("\n")
    # The log says "installed" before the progress file says done, so a page (or test) that
    # sees "done" and reads the log finds the line.
    print(f"{name}: installed in {seconds:.1f} s under {base.dataset_dir(name)}", flush=True)
    writer.finish(f"done in {seconds:.1f} s")
    _print_info(name)
    return 0


def _remove_upload(path: str) -> None:
    """Deletes a temporary upload (only inside the data root's upload folder)."""
    background.remove_upload(path)


def _print_info(name: str, as_json: bool = False) -> None:
    info = registry.get_info(name)
    details = registry.status_details(name)
    summary = registry.split_counts(name)
    usage = registry.disk_usage(name)
    if as_json:
        print(json.dumps({"name": name, "title": info.title, "synthetic": info.synthetic,
                          "status": details["status"], "reason": details["reason"],
                          "disk_usage": usage, **summary}, indent=2))
        return
    print(f"{name}: {info.title}")
    if info.synthetic:
        print("SYNTHETIC data: generated on this machine, not real photographs")
    print(f"status: {details['status']}" + (f" ({details['reason']})" if details["reason"] else ""))
    print(f"data root: {paths.data_dir()}")
    print(f"disk: {download.human_bytes(usage['data'])} data + {download.human_bytes(usage['cache'])} decoded cache")
    counts = summary.get("counts", {})
    if not counts:
        print("no images installed")
        return
    if name == "gtsrb" and "train" in counts:
        from core.datasets import gtsrb

        print(f"validation: whole tracks, about {gtsrb.VALID_FRACTION:.2f} of each class (split_seed 0)")
    for split, per_class in counts.items():
        print(f"  {split:<5} {sum(per_class):>7,} images in {sum(1 for c in per_class if c)} classes")
    if "train" in counts and "val" in counts:
        training = [a + b for a, b in zip(counts["train"], counts["val"])]
        print(f"  train + val: {sum(training):,} training images in {sum(1 for c in training if c)} classes")
    tracks = summary.get("tracks")
    if tracks:
        verdict = "no track is in both" if tracks["shared"] == 0 else f"{tracks['shared']} tracks in BOTH"
        print(f"tracks: {tracks['train']:,} in train, {tracks['val']:,} in val; {verdict}")
    skipped = summary.get("skipped")
    if skipped and any(skipped.values()):
        print("skipped at import: " + ", ".join(f"{value:,} {key.replace('_', ' ')}"
                                                for key, value in skipped.items() if value))
    source_counts = summary.get("source_counts")
    if source_counts:
        print("source: " + "; ".join(f"{split} " + ", ".join(f"{k} {v:,}" for k, v in classes.items())
                                     for split, classes in source_counts.items()))
    splits = list(counts)
    width = max(len(class_name) for class_name in summary["class_names"])
    print(f"  {'id':>3}  {'class':<{width}}  " + "  ".join(f"{split:>6}" for split in splits))
    for class_id, class_name in enumerate(summary["class_names"]):
        print(f"  {class_id:>3}  {class_name:<{width}}  "
              + "  ".join(f"{counts[split][class_id]:>6,}" for split in splits))


def parse_class_arguments(values: list[str]) -> dict[str, list[str]]:
    """``["cat=a", "dog=b", "cat=c"]`` -> ``{"cat": ["a", "c"], "dog": ["b"]}`` (first-seen order).

    Raises:
        DatasetError: an argument without ``=``, an empty label or an empty path.
    """
    classes: dict[str, list[str]] = {}
    for value in values:
        label, separator, path = value.partition("=")
        if not separator or not label.strip() or not path.strip():
            raise base.DatasetError(f"--class expects LABEL=PATH, received {value!r}")
        classes.setdefault(label.strip(), []).append(path.strip())
    return classes


def command_create(arguments) -> int:
    if bool(arguments.classes) == bool(arguments.folder):
        raise base.DatasetError("create needs either --class LABEL=PATH (repeatable) or --from FOLDER")
    classes = (parse_class_arguments(arguments.classes) if arguments.classes
               else custom.classes_from_folder(arguments.folder))
    line = None if arguments.quiet else _ProgressLine()
    started = time.perf_counter()
    manifest = custom.create(arguments.name, classes, title=arguments.title, progress=line)
    if line is not None:
        sys.stderr.write("\n")
    seconds = time.perf_counter() - started
    print(f"{arguments.name}: created in {seconds:.1f} s under {base.dataset_dir(arguments.name)}")
    _print_info(arguments.name)
    return 0


def command_info(arguments) -> int:
    base.check_name(arguments.name)
    _print_info(arguments.name, arguments.json)
    return 0


def command_delete(arguments) -> int:
    freed = registry.delete(arguments.name)
    print(f"{arguments.name}: deleted, {download.human_bytes(freed)} freed")
    return 0


def command_list(arguments) -> int:
    for name in registry.dataset_names():
        details = registry.status_details(name)
        usage = registry.disk_usage(name)
        print(f"{name:<16} {details['status']:<12} {download.human_bytes(usage['total']):>10}  {registry.get_info(name).title}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.datasets", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("get", help="import (--from) or download a dataset")
    get.add_argument("name", choices=registry.DATASET_NAMES)
    get.add_argument("--from", dest="sources", action="append", metavar="PATH",
                     help="official zip, its extracted folder, or a folder holding the zips (repeatable)")
    get.add_argument("--variant", choices=download.DOGS_VARIANTS,
                     help="dogs-vs-cats download: filtered (68 MB, default) or microsoft (825 MB)")
    get.add_argument("--quiet", action="store_true", help="no progress line")
    get.add_argument("--background", action="store_true", help=argparse.SUPPRESS)
    get.add_argument("--cleanup", action="append", metavar="PATH", help=argparse.SUPPRESS)
    get.set_defaults(handler=command_get)
    create = commands.add_parser("create", help="build a custom dataset from your own images")
    create.add_argument("name", help="new dataset name: lower-case letters, digits, '-' or '_'")
    create.add_argument("--class", dest="classes", action="append", metavar="LABEL=PATH",
                        help="a class and a folder, zip or image of it (repeatable)")
    create.add_argument("--from", dest="folder", metavar="FOLDER",
                        help="a folder with one sub-folder of images per class")
    create.add_argument("--title", help="a title for the Datasets page")
    create.add_argument("--quiet", action="store_true", help="no progress line")
    create.set_defaults(handler=command_create)
    info = commands.add_parser("info", help="status, disk use, counts per split and class")
    info.add_argument("name", help="a built-in dataset or an installed custom one")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=command_info)
    delete = commands.add_parser("delete", help="delete a dataset's files and caches")
    delete.add_argument("name", help="a built-in dataset or an installed custom one")
    delete.set_defaults(handler=command_delete)
    listing = commands.add_parser("list", help="every dataset with its status")
    listing.set_defaults(handler=command_list)
    return parser


def main(argv=None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        return arguments.handler(arguments)
    except base.DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

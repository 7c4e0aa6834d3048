"""ImageNet weights from the command line, with the feel of ``python -m core.datasets``.

    python -m core.weights list
    python -m core.weights get mobilenetv2                       # download Keras' files (online)
    python -m core.weights get mobilenetv2 --from a.weights.h5 --from b.weights.h5
    python -m core.weights info mobilenetv2 [--json]
    python -m core.weights delete mobilenetv2

``get --from`` works out whether each file is the no-top or the with-top variant (and alpha),
checks every layer's shapes, records sha256, source and date, and installs atomically under
``$TLLAB_DATA_DIR/weights/``. Exit status: 0 done, 1 refused or failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import sys

from core.models import backbones
from core.weights import catalogue, store
from core.weights.inspection import WeightsFileError

DEFAULT_DOWNLOAD_VARIANTS = {"vgg16": (catalogue.NO_TOP,)}  # VGG16's top alone is 553 MB
EXIT_OK, EXIT_FAILED = 0, 1


def _human(size) -> str:
    from core.datasets.download import human_bytes

    return human_bytes(size) if size else "-"


def command_list(arguments) -> int:
    for row in store.rows():
        alpha = "" if row["alpha"] is None else f"alpha {row['alpha']}"
        print(f"{row['backbone']:<12} {row['variant']:<7} {row['status']:<10} {alpha:<10} "
              f"{_human(row['size']):>9}  {row['source']}")
    return EXIT_OK


def command_get(arguments) -> int:
    progress = None if arguments.quiet else store.log_progress(
        lambda text: print(text, file=sys.stderr, flush=True), step_percent=25)
    if arguments.sources:
        for source in arguments.sources:
            entry = store.import_file(arguments.name, source, progress=progress)
            print(f"{arguments.name}: installed {entry['variant']} (alpha {entry['alpha']}, "
                  f"{entry['layers']} layers, sha256 {entry['sha256'][:16]}) from {source}")
        return EXIT_OK
    variants = (DEFAULT_DOWNLOAD_VARIANTS.get(arguments.name, catalogue.VARIANTS)
                if arguments.variant == "default" else
                catalogue.VARIANTS if arguments.variant == "both" else (arguments.variant,))
    for variant in variants:
        entry = store.download(arguments.name, variant, progress=progress)
        print(f"{arguments.name}: installed {entry['variant']} from {entry['source']} "
              f"(sha256 {entry['sha256'][:16]})")
    return EXIT_OK


def command_info(arguments) -> int:
    entries = {variant: store.installed(arguments.name, variant) for variant in catalogue.VARIANTS}
    if arguments.json:
        print(json.dumps(entries, indent=2, sort_keys=True))
        return EXIT_OK
    for variant, entry in entries.items():
        if not entry:
            official = catalogue.official_file(arguments.name, variant)
            print(f"{arguments.name} {variant}: not installed (Keras' file: {official.file_name})")
            continue
        print(f"{arguments.name} {variant}: {entry['path']}\n  alpha {entry['alpha']}, format "
              f"{entry['format']}, {entry['layers']} layers, {entry['values']:,} values, "
              f"{_human(entry['size'])}\n  sha256 {entry['sha256']}\n  source {entry['source']}, "
              f"installed {entry['installed_at']}")
    return EXIT_OK


def command_delete(arguments) -> int:
    freed = store.delete(arguments.name)
    print(f"{arguments.name}: deleted, {_human(freed) if freed else '0 B'} freed")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.weights",
                                     description="ImageNet weights: list, get (download or --from), info, delete.")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="every backbone and variant with its status")
    listing.set_defaults(handler=command_list)
    get = commands.add_parser("get", help="download Keras' files, or import local ones with --from")
    get.add_argument("name", choices=backbones.BACKBONE_NAMES)
    get.add_argument("--from", dest="sources", action="append", metavar="PATH",
                     help="a local .h5 or .weights.h5 file (repeatable); the variant is detected")
    get.add_argument("--variant", choices=("default", "both") + catalogue.VARIANTS, default="default",
                     help="downloads: which files (default: both, VGG16 only no_top)")
    get.add_argument("--quiet", action="store_true", help="no progress lines")
    get.set_defaults(handler=command_get)
    info = commands.add_parser("info", help="what is installed: path, alpha, sha256, source, date")
    info.add_argument("name", choices=backbones.BACKBONE_NAMES)
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=command_info)
    delete = commands.add_parser("delete", help="delete a backbone's installed weights")
    delete.add_argument("name", choices=backbones.BACKBONE_NAMES)
    delete.set_defaults(handler=command_delete)
    return parser


def main(argv=None) -> int:
    arguments = build_parser().parse_args(argv)
    try:
        return arguments.handler(arguments)
    except (WeightsFileError, store.WeightsUnavailableError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

"""Model families: ``config["model"]`` -> module with ``resolve_config(config, runs_root=None)``
and ``train(context)``. ``runs_root`` is where a config's source run (``source_run``,
``weights="run:<id>"``) is looked up; None means ``core.paths.runs_dir()``.

One module per family: ``lenet_family`` (LeNet-5 from scratch), ``backbone_family`` (VGG16,
MobileNetV2, MobileNet transfer) and ``lenet_transfer_family`` (few-shot LeNet transfer).
"""

import importlib

from core.models.backbones import BACKBONE_NAMES

LENET_MODEL = "lenet5"
LENET_TRANSFER_MODEL = "lenet5-transfer"
FAMILY_MODULES = {
    LENET_MODEL: "core.training.lenet_family",
    **{backbone: "core.training.backbone_family" for backbone in BACKBONE_NAMES},
    LENET_TRANSFER_MODEL: "core.training.lenet_transfer_family",
}
MODEL_NAMES = tuple(FAMILY_MODULES)


def family_module(model_name: str):
    """Imports the family module for ``model_name``.

    Raises:
        ValueError: when no family is registered under that name.
    """
    if model_name not in FAMILY_MODULES:
        raise ValueError(
            f"Unknown model {model_name!r}; expected one of {sorted(FAMILY_MODULES)}"
        )
    return importlib.import_module(FAMILY_MODULES[model_name])


def transfer_family_for_source(backbone: str, source_model: str | None) -> str:
    """Which model a transfer from a finished run trains (the rule the Transfer page follows).

    A run of the same backbone lends its convolutional layers to that backbone (the backbone
    family); any other run (e.g. a LeNet) lends its layers to a copy of its own architecture
    with a new classifier (the few-shot LeNet transfer family).

    Args:
        backbone: the backbone chosen on the page.
        source_model: the source run's ``model``.

    Returns:
        ``backbone`` or ``"lenet5-transfer"``.
    """
    return backbone if source_model == backbone and backbone in BACKBONE_NAMES else LENET_TRANSFER_MODEL

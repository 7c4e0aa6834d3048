"""Model families: ``config["model"]`` -> module with ``resolve_config(config)`` and ``train(context)``."""

import importlib

FAMILY_MODULES = {
    "lenet5": "core.training.lenet_family",
    "vgg16": "core.training.transfer_family",
    "mobilenetv2": "core.training.transfer_family",
    "lenet5-transfer": "core.training.transfer_family",
}


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

"""'What ImageNet already sees': the pretrained network's own top-5 beside a run's answer.

Shown on the Classify page (and wherever an image is classified) when a backbone's with-top
ImageNet weights are installed: it makes visible that the base knew "Egyptian cat" before
any training on Dogs vs Cats.
"""

from __future__ import annotations

import streamlit as st

from core import weights
from core.models import backbones

# Preferred for the demo: the most accurate of the light networks first.
PREFERRED_BACKBONES = (backbones.MOBILENET_V2, backbones.MOBILENET, backbones.VGG16)
TOP_K = 5


@st.cache_resource(show_spinner=False, max_entries=3)
def load_imagenet_classifier(backbone: str, sha256: str):
    """The with-top ImageNet network, cached per installed file (``sha256`` keys the cache)."""
    from core.inference import ImageNetClassifier

    return ImageNetClassifier.load(backbone=backbone)


def installed_classifier_backbone() -> tuple[str, str] | None:
    """``(backbone, sha256)`` of the preferred installed with-top weights, or None."""
    for backbone in PREFERRED_BACKBONES:
        entry = weights.installed(backbone, weights.TOP)
        if entry:
            return backbone, entry["sha256"]
    return None


def imagenet_top_k(image, key: str) -> None:
    """Renders the ImageNet top-5 of one image, or a hint on how to enable it."""
    found = installed_classifier_backbone()
    if found is None:
        st.caption("What ImageNet already sees: install a backbone's with-top weights on the "
                   "**Data & weights** page to show the pretrained network's own top-5 here.")
        return
    backbone, sha256 = found
    try:
        classifier = load_imagenet_classifier(backbone, sha256)
        ranked = classifier.top_k(classifier.predict([image]), TOP_K)[0]
    except (ValueError, OSError, weights.WeightsUnavailableError) as error:
        st.caption(f"What ImageNet already sees: unavailable ({error}).")
        return
    lines = "  \n".join(f"{item['probability'] * 100:5.1f}% {item['class'].split(',')[0]}" for item in ranked)
    with st.container(key=f"{key}_imagenet"):
        st.markdown(f"**What ImageNet already sees** ({backbone}, 1,000 classes, no training):  \n{lines}")

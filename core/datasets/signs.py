"""The 43 GTSRB classes: official English names and the look of each sign (shape, colours).

Shared by the GTSRB loader and the synthetic-signs generator, which uses the same class ids.
"""

from __future__ import annotations

NUM_CLASSES = 43

# Class id -> official English name (the names used with the GTSRB benchmark).
CLASS_NAMES = (
    "Speed limit (20km/h)",
    "Speed limit (30km/h)",
    "Speed limit (50km/h)",
    "Speed limit (60km/h)",
    "Speed limit (70km/h)",
    "Speed limit (80km/h)",
    "End of speed limit (80km/h)",
    "Speed limit (100km/h)",
    "Speed limit (120km/h)",
    "No passing",
    "No passing for vehicles over 3.5 metric tons",
    "Right-of-way at the next intersection",
    "Priority road",
    "Yield",
    "Stop",
    "No vehicles",
    "Vehicles over 3.5 metric tons prohibited",
    "No entry",
    "General caution",
    "Dangerous curve to the left",
    "Dangerous curve to the right",
    "Double curve",
    "Bumpy road",
    "Slippery road",
    "Road narrows on the right",
    "Road work",
    "Traffic signals",
    "Pedestrians",
    "Children crossing",
    "Bicycles crossing",
    "Beware of ice/snow",
    "Wild animals crossing",
    "End of all speed and passing limits",
    "Turn right ahead",
    "Turn left ahead",
    "Ahead only",
    "Go straight or right",
    "Go straight or left",
    "Keep right",
    "Keep left",
    "Roundabout mandatory",
    "End of no passing",
    "End of no passing by vehicles over 3.5 metric tons",
)

# Sign families (shape + colours): prohibitory = red ring on white; end = white disc with grey
# diagonal stripes; warning = red-bordered triangle; mandatory = blue disc with white arrows.
PROHIBITORY = (0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 15, 16)
END_OF_RESTRICTION = (6, 32, 41, 42)
WARNING = (11, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31)
MANDATORY = (33, 34, 35, 36, 37, 38, 39, 40)
OTHER = (12, 13, 14, 17)  # priority road (diamond), yield, stop, no entry

SPEED_LIMITS = {0: "20", 1: "30", 2: "50", 3: "60", 4: "70", 5: "80", 7: "100", 8: "120"}


def family(class_id: int) -> str:
    """``"prohibitory"``, ``"end"``, ``"warning"``, ``"mandatory"`` or ``"other"``."""
    for name, members in (("prohibitory", PROHIBITORY), ("end", END_OF_RESTRICTION),
                          ("warning", WARNING), ("mandatory", MANDATORY)):
        if class_id in members:
            return name
    return "other"


# Mirror images that are signs too (Staravoitau 2017's class-aware flips for GTSRB): a
# left-right mirror of these classes is the same sign, or its partner ("keep right" mirrored is
# "keep left"); an upside-down copy of VERTICAL_MIRROR_SELF is the same sign, and so is a
# half-turn of HALF_TURN_SELF.
HORIZONTAL_MIRROR = {
    **{class_id: class_id for class_id in (11, 12, 13, 15, 17, 18, 22, 26, 30, 35)},
    19: 20, 20: 19, 33: 34, 34: 33, 36: 37, 37: 36, 38: 39, 39: 38,
}
VERTICAL_MIRROR_SELF = (1, 5, 12, 15, 17)
HALF_TURN_SELF = (32, 40)


def mirrored_signs(images, labels):
    """The extra training images that mirroring GTSRB signs gives, with their classes.

    Args:
        images: (N, height, width, channels) array of signs, class ids in ``labels``.
        labels: (N,) GTSRB class ids.

    Returns:
        ``(extra_images, extra_labels)``: left-right mirrors of ``HORIZONTAL_MIRROR``'s classes
        (labelled with their mirror class), upside-down copies of ``VERTICAL_MIRROR_SELF`` and
        half-turns of ``HALF_TURN_SELF``, in that order.
    """
    import numpy as np

    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 4 or len(images) != len(labels):
        raise ValueError(f"images must be (N, height, width, channels) with one label each, "
                         f"received images {images.shape} and labels {labels.shape}")
    horizontal = np.isin(labels, list(HORIZONTAL_MIRROR))
    vertical = np.isin(labels, VERTICAL_MIRROR_SELF)
    half_turn = np.isin(labels, HALF_TURN_SELF)
    mirror_of = np.arange(max(NUM_CLASSES, int(labels.max(initial=0)) + 1))
    for class_id, mirror in HORIZONTAL_MIRROR.items():
        mirror_of[class_id] = mirror
    extra_images = np.concatenate([images[horizontal][:, :, ::-1], images[vertical][:, ::-1],
                                   images[half_turn][:, ::-1, ::-1]])
    extra_labels = np.concatenate([mirror_of[labels[horizontal]], labels[vertical],
                                   labels[half_turn]]).astype(labels.dtype)
    return extra_images, extra_labels

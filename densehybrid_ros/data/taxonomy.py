"""Label taxonomy of the synthetic driving world (Cityscapes-like, StreetHazards-like file format).

Inlier classes have ids 0..K-1, the anomaly label is K, and void is 255, as in StreetHazards' K+1 labelling.
Real data sets carry their own taxonomy in their adapter; the model card records which one a model was trained on.
"""
from __future__ import annotations

from dataclasses import dataclass

VOID_LABEL = 255


@dataclass(frozen=True)
class Taxonomy:
    names: tuple[str, ...]
    colours: tuple[tuple[int, int, int], ...]  # RGB
    anomaly_colour: tuple[int, int, int] = (255, 0, 255)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def anomaly_label(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def split_index_fields(self) -> dict:
        """What a written split's index.json says about its labels (the evaluation reads the taxonomy from it)."""
        return {"taxonomy": {"names": list(self.names), "colours": [list(c) for c in self.colours],
                             "anomaly_colour": list(self.anomaly_colour)},
                "num_classes": self.num_classes, "anomaly_label": self.anomaly_label, "void_label": VOID_LABEL}


# Trucks and buses share one class ("truck"): at the resolutions a Jetson runs they look alike and the
# distinction does not matter to obstacle alerts. Walls and fences stay apart (Cityscapes does the same).
SYNTHETIC = Taxonomy(
    names=(
        "road", "sidewalk", "building", "wall", "fence", "pole", "traffic_light", "traffic_sign",
        "vegetation", "terrain", "sky", "person", "car", "truck",
    ),
    colours=(
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
        (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
        (0, 0, 142), (0, 0, 70),
    ),
)

# The seven ComsAmy conditions (open-set-anomaly-segmentation-complex-scenarios, section III).
CONDITIONS = ("clear", "rain", "fog", "night", "snow", "dusk", "sandstorm")

"""Every photograph that data/negatives.py lists as bundled with an installed package loads with the pinned
packages. The loader skips a failing entry on purpose (an optional package may be missing on a user's machine), so
without this test a renamed loader (scikit-image 0.26 renamed ``motorcycle_left`` to ``stereo_motorcycle``) silently
drops its photograph from the training negatives."""
from __future__ import annotations

import numpy as np
import pytest

from densehybrid_ros.data.negatives import PACKAGED_IMAGES, PackagedImageNegatives, _load_packaged


@pytest.mark.parametrize("module,name", PACKAGED_IMAGES, ids=[f"{m}{'.' + n if n else ''}" for m, n in PACKAGED_IMAGES])
def test_each_packaged_photograph_loads_as_rgb(module, name):
    img = _load_packaged(module, name)
    assert img is not None, f"{module} {name} did not load: renamed, moved or no longer shipped?"
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert min(img.shape[:2]) >= 64
    assert img.std() > 5  # a photograph, not a blank or constant array


def test_packaged_negatives_use_every_listed_photograph():
    assert len(PackagedImageNegatives()) == len(PACKAGED_IMAGES)


def test_no_photograph_of_an_inlier_class_is_a_negative():
    from densehybrid_ros.data.negatives import EXCLUDED_PACKAGED_IMAGES

    names = {n or m.split(":", 1)[1] for m, n in PACKAGED_IMAGES}
    assert not names & set(EXCLUDED_PACKAGED_IMAGES)

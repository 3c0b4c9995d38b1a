import os

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("ci", deadline=None, print_blob=True)
settings.load_profile("ci")


@pytest.fixture
def rng():
    return np.random.default_rng(0)

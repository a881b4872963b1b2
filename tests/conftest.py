"""Suite-wide test settings: hypothesis runs derandomized, so every run draws the same examples.

Tests must not depend on luck or machine speed; a failing example found by a local
exploratory run (`HYPOTHESIS_PROFILE=explore ./test`) is pinned with @example.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

"""cdp-sim: a seeded simulator of a retailer and its customers, with the ground truth.

    from cdp_sim import World
    world = World.generate(people=1000, days=60, seed=7)
    for msg in world.events(): ...          # Segment messages, in time order
    truth = world.truth()                   # one dict per person
    world.write("out/")                     # every file + manifest.json

See docs/simulator.md.
"""

__version__ = "0.1.0"

from .api import World  # noqa: E402
from .engine import normalize_email, normalize_phone  # noqa: E402
from .world import SimConfig  # noqa: E402

__all__ = ["World", "SimConfig", "normalize_email", "normalize_phone", "__version__"]

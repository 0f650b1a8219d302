import sys
from pathlib import Path

# The tests import the spawner package and tests.support from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

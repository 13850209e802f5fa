"""Paths of the repository, for tests that run its commands or read data/."""

import os

# The repository root (tests/support/ is two levels below it).
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

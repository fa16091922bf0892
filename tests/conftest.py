import os
import sys

# tests/ helpers (toy.py) importable from tests and from the subprocesses they start
sys.path.insert(0, os.path.dirname(__file__))

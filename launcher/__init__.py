"""launcher: one job file, every GPU cloud.

Importing this package must stay cheap: no torch, transformers or cloud SDK at import time.
"""

__version__ = "0.1.0"

"""The one label convention of the project: 0 = real (camera), 1 = AI-generated.

Test-set folders (``0_real`` / ``1_fake``), the binary detector's logit index, every metric and
every score row use it; ``NAMES`` are the words rows and reports print.
"""

REAL, FAKE = 0, 1
NAMES = {REAL: "real", FAKE: "ai-generated"}

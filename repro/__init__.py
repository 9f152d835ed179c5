"""repro: reproduce the tables of efficient-CNN papers.

The flow runs one way: table spec -> cells -> runs -> results store (+ W&B mirror) -> report.
Heavy modules (torch, lightning, ray) are imported lazily so `repro --help` stays fast.
"""

__version__ = "0.1.0"

"""msfw-redis benchmarks: ``python -m benchmarks [NAME] [--quick] [--json PATH]``."""

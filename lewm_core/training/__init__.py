"""Training: the loop, its configuration, recovery, validation, distributed runs and background
jobs."""

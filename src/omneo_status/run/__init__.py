"""One run's pipeline: orchestrate, plan the lookups, scan, resolve, decide, send, watch,
read back and verify."""

"""Inter-process plumbing: shared-memory worker slots and descriptor passing."""

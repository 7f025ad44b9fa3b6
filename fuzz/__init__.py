"""Fuzzing targets for the Sans-I/O core and the LAppS protocol (see fuzz/README.md)."""

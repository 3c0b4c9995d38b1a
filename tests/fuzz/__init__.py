"""Differential fuzzer for symfuse: random programs on every device against the
interpreter, and the interpreter against an independent numpy float64 twin."""

"""The HTTP contract, sans I/O: one `Op` per endpoint, the bodies, and the SSE framing.

The daemon's routes and both clients are written from these declarations; a test checks that
every op has its route (`tests/interfaces/test_wire.py`).
"""

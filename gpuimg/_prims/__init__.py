"""Accelerated primitives: each module registers a NumPy twin and a CUDA twin per primitive.

Modules here are imported by the backend on first use of any primitive; they may import the
kernel loader but never ``cupy`` itself (they reach it as ``be.xp``).
"""

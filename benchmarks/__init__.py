"""Benchmarks of torch_sunrise, each measured beside CPU eager in the same process.

Run them as modules from the repository root, e.g.
``.venv/bin/python -m benchmarks.bench_allocator``; see benchmarks/README.md.
"""

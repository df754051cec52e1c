"""Benchmarks for mfclip (issue 6): selection, inference, training, input pipeline, scaling.

Run everything with ``make bench`` (``python -m benchmarks.run_all``); each script also runs on
its own (``python -m benchmarks.bench_selection --quick``) and writes
``benchmarks/results/<name>.json``.
"""

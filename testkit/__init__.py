"""Support shared by the tests and the benchmarks: polling, child-process settings, Kafka
consumer threads, and the processor harness. It ships with ``bench`` (which runs from an
installed wheel), so neither imports from ``tests``.
"""

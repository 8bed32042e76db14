"""The equivalence harness: real nginx and newproxy side by side on the same traffic, diffed.

``run_shadow(path)`` is the entry point; see ``shadow/README.md`` for what is compared and how
outputs are normalised.
"""

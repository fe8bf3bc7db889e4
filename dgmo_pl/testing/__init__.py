"""Code for tests and benchmarks, not for separating.

Offline random diffusion models
(:mod:`~dgmo_pl.testing.tiny`), a tiny CLAP (:mod:`~dgmo_pl.testing.tiny_clap`), 0 dB mixtures of
real recordings (:mod:`~dgmo_pl.testing.mixing`) and an example evaluation set
(:mod:`~dgmo_pl.testing.example_set`). Nothing in the rest of the library imports it.
"""

"""``python -m dgmo_pl.tiny OUT_DIR ...``: the documented command for the offline random models.

The builders are test and benchmark code and live in :mod:`dgmo_pl.testing.tiny`; this package
only keeps the command's name.
"""

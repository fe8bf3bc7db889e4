"""``python -m dgmo_pl.tiny OUT_DIR ...``: write a random model (see :mod:`dgmo_pl.testing.tiny`)."""

from dgmo_pl.testing.tiny import main

main()

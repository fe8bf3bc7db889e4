"""``python -m dgmo_pl.app``: the same as ``dgmo-pl app``."""

import sys

from dgmo_pl.entry import main

if __name__ == "__main__":
    main(["app", *sys.argv[1:]])

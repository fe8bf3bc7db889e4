"""``python -m dgmo_pl fit --config configs/dgmo.yaml``: the same command line as ``main.py``."""

from dgmo_pl.entry import main

if __name__ == "__main__":
    main()

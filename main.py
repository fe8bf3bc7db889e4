"""DGMO separation: ``python main.py fit --config configs/dgmo.yaml``."""

from dgmo_pl.entry import main

if __name__ == "__main__":
    main()

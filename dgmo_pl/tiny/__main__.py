from dgmo_pl.testing.tiny import main

main()

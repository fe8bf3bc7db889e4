from dgmo_pl.tiny import main

main()

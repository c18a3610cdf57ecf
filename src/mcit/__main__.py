from mcit.cli import main

main()

from kmsguard.cli import main

main()

from kmsguard.launch import main

main()

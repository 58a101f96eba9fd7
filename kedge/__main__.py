from kedge.cli import main

main()

from fundx.cli import main

main()

from inspect_tool.cli import main

main()

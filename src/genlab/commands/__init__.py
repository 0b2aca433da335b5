"""The command-line commands: each parses its key=value arguments (args.py) and calls the library."""

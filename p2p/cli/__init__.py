"""The `pouw` command line: `main.py` builds the parser and runs a subcommand; one module per
command group (node, devnet, wallet, task, sim, work, bench, params) registers its subcommands.
Nothing below the command line imports this package.
"""

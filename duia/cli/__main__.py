"""`python -m duia.cli ...`, the same as the `duia` command."""

import sys

from duia.cli.app import main

main(sys.argv[1:])

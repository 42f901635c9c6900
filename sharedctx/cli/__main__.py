"""`python -m sharedctx.cli ...`: the same as the `sharedctx` console script."""

from . import main

main()

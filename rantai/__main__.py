"""``python -m rantai``: the same as the ``rantai`` console script."""

from rantai.cli import main

main()

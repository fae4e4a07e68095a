"""`python -m imgclf ...`."""

from imgclf.cli import main

main()

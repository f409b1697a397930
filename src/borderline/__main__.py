"""`python -m borderline` is the `borderline` command."""

from borderline.cli import main

main()

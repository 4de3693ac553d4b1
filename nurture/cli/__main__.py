"""`python -m nurture.cli`: the same as the `nurture` console script."""

from nurture.cli import main

main()

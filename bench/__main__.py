"""`python -m bench`: run every benchmark and print its figures."""

from bench import csv_import

csv_import.main()

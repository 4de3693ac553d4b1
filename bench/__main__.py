"""`python -m bench`: run every benchmark and print its figures."""

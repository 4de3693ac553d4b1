"""`nurture doctor`: is the mail setup one that Gmail, Yahoo and Microsoft will accept?

Most small senders fail on DNS, not code: since 2024 Gmail and Yahoo (and Microsoft since
May 2025) reject or junk mail without SPF, DKIM and an aligned DMARC record. Each check is
one small function returning Findings (report.py); checks.py runs them all for the From
domains of the sequences and the configured relay. Everything that reaches outside (the DNS
resolver, the CA bundle, the timeout) comes in through one Probe, so tests point it at
servers of their own.
"""

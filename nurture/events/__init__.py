"""What happened: an event recorded with every change worth remembering (for `stats` and a
person's history), and the outbox that announces some of them to the practice's own systems
(event webhooks)."""

"""Bookings reported by a scheduling service (Calendly, Cal.com): the sequence stops."""

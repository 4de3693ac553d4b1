"""What comes back from sent mail (bounces, complaints, replies) and what it does.

It sits above subscribers and delivery, whose rows it changes; nurture.mail (sending) sits
below all three and knows nothing of this package. classify.py says what a returned message
is (reasons.py whether a bounce is hard or soft), handling.py what it does, inbox.py and
webhooks.py are the two ways it arrives.
"""

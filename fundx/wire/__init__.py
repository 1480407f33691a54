"""What crosses between the exchange and a stage: inboxes, parts, READY and acknowledgements."""

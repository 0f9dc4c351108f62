"""What every service has in common: settings, database, events, outbox, consumer, auth, errors."""

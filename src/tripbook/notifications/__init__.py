"""Customer emails and loss-tolerant pings."""

"""The sync engine: contact records in, normalised records and reason codes out."""

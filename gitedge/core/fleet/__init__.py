"""What the fleet repo says: snapshot, safe YAML, the kinds, their values."""

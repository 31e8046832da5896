"""Site status reports in a registry: pushed, and read fleet-wide."""

"""Which commits of the fleet repo the agent accepts."""

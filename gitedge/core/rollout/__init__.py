"""From fleet, cluster facts and time to SUC Plans, and back."""

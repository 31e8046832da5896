"""What a site says about itself: conditions, reports, the fleet page."""

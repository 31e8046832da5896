"""Images copied into the site cache, and proved whole there."""

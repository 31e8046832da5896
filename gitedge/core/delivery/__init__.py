"""Getting images to a site: pins, bundles, node registry files."""

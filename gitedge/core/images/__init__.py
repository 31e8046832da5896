"""Image names, manifests and cosign signatures, as bytes: no fleet here."""

"""An OCI distribution client over bounded, authenticated HTTP."""

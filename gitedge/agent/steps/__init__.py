"""The steps of one reconcile pass, each with the rules it applies."""

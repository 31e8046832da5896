"""Offline bundles: made, imported through the pass's steps, inboxed."""

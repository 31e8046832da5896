"""Commit and image signatures checked: SSHSIG, OpenPGP, cosign."""

"""gitedge: a pull-based GitOps agent for disconnected K3s edge sites."""

__version__ = "0.1.0"

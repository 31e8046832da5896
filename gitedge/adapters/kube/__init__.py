"""The Kubernetes API: nodes, SUC Plans, Events, SUC itself."""

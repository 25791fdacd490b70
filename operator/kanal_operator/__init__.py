"""Kanal operator: reconciles ConnectCluster and Connector resources (kopf)."""

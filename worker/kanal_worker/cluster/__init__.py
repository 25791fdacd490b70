"""Cluster mode: a worker that runs in a pod and executes what the operator assigns.

The operator and the workers never call each other; they meet in the API server.
``protocol`` holds what both sides must agree on, everything else is the worker's.
"""

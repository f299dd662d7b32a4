"""The lab: the Kubernetes API stand-in, its seeds, and (later) the lab mesh of real Envoys and Prometheus."""

"""The lab mesh: the bookstore demo's pods as tiny apps behind real Envoy sidecars, mTLS with OSM identities, SMI
policy and TrafficSplit weights applied at run time from the Kubernetes API stand-in, scraped by a real Prometheus.

Python: `LabMesh(kubeconfig, workdir).start()` / `.stop()` (lab.mesh.lab). Command line: `python -m lab.mesh`.
"""

from lab.mesh.apps import Behaviour
from lab.mesh.lab import LabMesh

__all__ = ["Behaviour", "LabMesh"]

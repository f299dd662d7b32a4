"""`python -m lab.bench migrate`: the OSM → Istio migration assistant on the synthetic mesh (`--services 1000`).

The mesh is collected from the stand-in (in its own process) and its KPIs filled as the metrics collector stores
them (the edges order the namespaces); then, `runs` times: reading the snapshot, the translation, the equivalence
check over every (source, destination, route) and the plan (`apps.migration.services.build`), and the YAML bundle.
Target: translation plus equivalence check ≤ 10 s for 1,000 services.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from lab.benchkit import setup_django, standin
from lab.synthetic_kpis import fill_kpis


def bench_migrate(services: int, runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        setup_django(tmp)
        from apps.clusters.models import Cluster
        from apps.mesh.services import collect_and_record
        from apps.migration import services as migration
        from apps.migration.equivalence import check
        from apps.migration.plan import cutover
        from apps.migration.translate import translate_mesh
        from apps.policies.model import Target
        from apps.policies.snapshot import load
        from lab.synthetic import generate

        with standin(services, Path(tmp)) as kubeconfig:
            cluster = Cluster.objects.create(name="bench", kubeconfig_path=str(kubeconfig))
            _run, error = collect_and_record(cluster)
            if error is not None:
                sys.exit(f"collection failed: {error.reason}")
        fill_kpis(cluster, generate(services))

        phases: dict[str, list[float]] = {"load": [], "translate": [], "check": [], "plan": [], "bundle": []}
        totals = []
        result = translation = None
        for _ in range(runs):
            started = time.perf_counter()
            mesh = load(cluster)
            loaded = time.perf_counter()
            translation = translate_mesh(mesh, Target("asm-1-27"))
            translated = time.perf_counter()
            result = check(translation)
            checked = time.perf_counter()
            plan = cutover(mesh, translation.target, [p.name for p in translation.namespaces.values() if p.meshed])
            planned = time.perf_counter()
            built = migration.Migration(cluster, translation, result, plan)
            migration.bundle_yaml(built)
            done = time.perf_counter()
            for name, (a, b) in {
                "load": (started, loaded),
                "translate": (loaded, translated),
                "check": (translated, checked),
                "plan": (checked, planned),
                "bundle": (planned, done),
            }.items():
                phases[name].append(b - a)
            totals.append(planned - started)

    assert translation is not None and result is not None
    counts = translation.counts()

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.0f} ms"

    print(f"## migrate: synthetic --services {services}, {runs} runs")
    print(
        f"- mesh: {len(translation.mesh.groups)} workloads, {len(translation.mesh.grants)} grants, "
        f"{len(translation.namespaces)} namespaces → {len(translation.manifests)} objects, "
        f"{len(translation.patches)} workload patches; fidelity {counts}"
    )
    print(
        f"- equivalence check: {result.requests} requests, {result.pairs} (source, destination) pairs, "
        f"{result.destinations} destinations; {len(result.differences)} differences "
        f"({len(result.unexplained)} unexplained)"
    )
    print(
        f"- snapshot + translation + equivalence check + plan: median {statistics.median(totals):.2f} s "
        f"(min {min(totals):.2f}, max {max(totals):.2f}); target ≤ 10 s"
    )
    print("- phases (median): " + ", ".join(f"{name} {ms(values)}" for name, values in phases.items()))


if __name__ == "__main__":
    bench_migrate(int(sys.argv[1]) if len(sys.argv) > 1 else 1000, 3)

"""The weight form: the validation boundary. It returns a WeightChangeRequest or field errors, never a half-valid
change, whatever is posted (tampered hidden fields included)."""

from __future__ import annotations

from django import forms

from apps.mesh.models import Canary, MeshNamespace, Service, TrafficSplit
from apps.policies.checks import flagger_canaries

from .weights import MAX_TOTAL, MAX_WEIGHT, BackendWeight, WeightChangeRequest

MAX_BACKENDS = 20


def flagger_canary_for(split: TrafficSplit) -> Canary | None:
    """The Flagger Canary that drives this split, by the same rule as the mesh check MB-SPLIT-008."""
    canaries = list(Canary.objects.filter(cluster=split.cluster, namespace=split.namespace))
    names = flagger_canaries(split, canaries)
    return next((c for c in canaries if c.name in names), None)


def default_canary_backend(split: TrafficSplit, canary: Canary | None, backends: list[str]) -> str:
    """Flagger names its canary backend `<apex>-canary`; without Flagger the operator says which one it is."""
    if canary is None:
        return ""
    apex = (canary.service or {}).get("name") or (canary.target_ref or {}).get("name") or ""
    return f"{apex}-canary" if f"{apex}-canary" in backends else ""


class WeightsForm(forms.Form):
    # (row, why) when the operator asked to remove a row that still has weight; shown on that row.
    removal_error: tuple[int, str] | None = None
    # Why the backend the operator picked was not added; shown under "Add backend".
    add_backend_error: str = ""

    resource_version = forms.CharField(widget=forms.HiddenInput, max_length=64)
    canary_backend = forms.CharField(required=False, max_length=253)
    confirm_flagger = forms.BooleanField(
        required=False, label="I know Flagger will overwrite these weights at its next step; apply anyway"
    )
    confirm_gitops = forms.BooleanField(
        required=False, label="I know the GitOps controller will put back the weights in Git at its next sync"
    )

    def __init__(
        self,
        split: TrafficSplit,
        data: object = None,
        *,
        backends: list[dict] | None = None,
        resource_version: str | None = None,
        canary_backend: str | None = None,
    ) -> None:
        """Bound to posted `data`, or unbound showing `backends` ({service, weight}, as typed) — the split's own by
        default — against `resource_version`."""
        super().__init__(data)
        self.split = split
        self.canary = flagger_canary_for(split)
        self.gitops = split.gitops_managers()
        if self.is_bound:
            rows = sum(1 for key in self.data if key.startswith("backend_"))
        else:
            backends = split.backends if backends is None else backends
            rows = len(backends)
        self.rows = min(rows, MAX_BACKENDS)
        self.rows_posted = rows  # more than MAX_BACKENDS is a form error, not rows silently dropped
        for i in range(self.rows):
            self.fields[f"backend_{i}"] = forms.CharField(widget=forms.HiddenInput, max_length=253)
            self.fields[f"weight_{i}"] = forms.IntegerField(
                min_value=0,
                max_value=MAX_WEIGHT,
                error_messages={
                    "invalid": "Enter a whole number: OSM cannot use fractional weights.",
                    "min_value": "Weights cannot be negative: OSM casts them to uint32 and they wrap around.",
                    "max_value": f"At most {MAX_WEIGHT:,} (Envoy's weights are 32-bit).",
                },
            )
        if not self.is_bound:
            self.initial["resource_version"] = split.resource_version if resource_version is None else resource_version
            names = [str(b.get("service", "")) for b in backends[: self.rows]]
            for i, backend in enumerate(backends[: self.rows]):
                self.initial[f"backend_{i}"] = names[i]
                # A weight OSM cannot use (33.5, -1) is shown as it is and must be corrected before saving.
                self.initial[f"weight_{i}"] = backend.get("weight")
            chosen = canary_backend if canary_backend is not None else default_canary_backend(split, self.canary, names)
            self.initial["canary_backend"] = chosen
        if self.canary is None:
            del self.fields["confirm_flagger"]
        if not self.gitops:
            del self.fields["confirm_gitops"]

    def row_fields(self) -> list[tuple[forms.BoundField, forms.BoundField]]:
        return [(self[f"backend_{i}"], self[f"weight_{i}"]) for i in range(self.rows)]

    def clean(self) -> dict[str, object]:
        data = super().clean()
        if self.rows == 0:
            raise forms.ValidationError("A TrafficSplit needs at least one backend.")
        if self.rows_posted > MAX_BACKENDS:
            raise forms.ValidationError(
                f"{self.rows_posted} backends were sent; a split edited here has at most {MAX_BACKENDS}."
            )
        names = [data.get(f"backend_{i}") for i in range(self.rows)]
        weights = [data.get(f"weight_{i}") for i in range(self.rows)]
        if any(n is None for n in names) or any(w is None for w in weights):
            return data  # field errors already say what is wrong
        if len(set(names)) != len(names):
            raise forms.ValidationError("A backend is listed twice.")
        total = sum(weights)
        if total < 1:
            raise forms.ValidationError("The weights must add up to at least 1: with 0, OSM drops the route.")
        if total > MAX_TOTAL:
            raise forms.ValidationError(f"The weights add up to {total:,}; Envoy's total is at most {MAX_TOTAL:,}.")
        self._check_backends(names)
        self._check_namespace()
        self._check_confirmations(data)
        return data

    def _check_backends(self, names: list[str]) -> None:
        split = self.split
        services = {
            s.name: s for s in Service.objects.filter(cluster=split.cluster, namespace=split.namespace, name__in=names)
        }
        root = Service.objects.filter(
            cluster=split.cluster, namespace=split.namespace, name=split.root_service_name
        ).first()
        for i, name in enumerate(names):
            service = services.get(name)
            if service is None:
                self.add_error(f"weight_{i}", f"There is no Service {name!r} in namespace {split.namespace}.")
            elif gap := service.port_gap(root):
                ports = ", ".join(gap)
                self.add_error(
                    f"weight_{i}", f"Service {name} lacks the root's port {ports}: OSM would ignore this backend."
                )

    def _check_namespace(self) -> None:
        split = self.split
        ns = MeshNamespace.objects.filter(cluster=split.cluster, name=split.namespace).first()
        if ns is None or not ns.monitored_by:
            raise forms.ValidationError(
                f"Namespace {split.namespace} is not in the mesh (no openservicemesh.io/monitored-by label): "
                "OSM ignores TrafficSplits there."
            )

    def _check_confirmations(self, data: dict) -> None:
        if self.canary is not None and not data.get("confirm_flagger"):
            self.add_error(
                "confirm_flagger",
                f"Flagger Canary {self.canary.name} manages this split and will overwrite the weights at its next "
                "step. Confirm to apply anyway.",
            )
        if self.gitops and not data.get("confirm_gitops"):
            self.add_error(
                "confirm_gitops",
                f"{' and '.join(self.gitops)} manages this split and will put back the weights in Git at its next "
                "sync. Change them in Git, or confirm to apply anyway.",
            )

    def change(self) -> WeightChangeRequest:
        """The validated change; call only after is_valid()."""
        data = self.cleaned_data
        return WeightChangeRequest(
            namespace=self.split.namespace,
            split=self.split.name,
            backends=tuple(BackendWeight(data[f"backend_{i}"], data[f"weight_{i}"]) for i in range(self.rows)),
            resource_version=data["resource_version"],
            confirm_flagger=bool(data.get("confirm_flagger")),
        )

    def posted_backends(self) -> list[dict[str, object]]:
        """The rows as shown: posted ({service, weight} with the weight as typed), else the initial ones."""
        source = self.data if self.is_bound else self.initial
        return [
            {"service": str(source.get(f"backend_{i}", "")), "weight": str(source.get(f"weight_{i}", "")).strip()}
            for i in range(self.rows)
        ]

    def posted_weights(self) -> list[int]:
        """The weights as whole numbers >= 0 (anything else counts as 0), for presets."""
        weights = []
        for backend in self.posted_backends():
            try:
                weights.append(max(0, int(str(backend["weight"]))))
            except ValueError:
                weights.append(0)
        return weights

    def canary_index(self) -> int | None:
        """The row the operator marked as the canary, if any."""
        chosen = (self.data if self.is_bound else self.initial).get("canary_backend", "")
        names = [b["service"] for b in self.posted_backends()]
        return names.index(chosen) if chosen in names else None

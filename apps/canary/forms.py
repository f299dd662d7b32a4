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


class WeightsForm(forms.Form):
    resource_version = forms.CharField(widget=forms.HiddenInput, max_length=64)
    confirm_flagger = forms.BooleanField(
        required=False, label="I know Flagger will overwrite these weights at its next step; apply anyway"
    )

    def __init__(self, split: TrafficSplit, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.split = split
        self.canary = flagger_canary_for(split)
        rows = sum(1 for key in self.data if key.startswith("backend_")) if self.is_bound else len(split.backends)
        self.rows = min(rows, MAX_BACKENDS)
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
            self.initial["resource_version"] = split.resource_version
            for i, backend in enumerate(split.backends[: self.rows]):
                self.initial[f"backend_{i}"] = backend.get("service", "")
                weight = backend.get("weight")
                # A weight OSM cannot use (33.5, -1) is shown as it is and must be corrected before saving.
                self.initial[f"weight_{i}"] = weight
        if self.canary is None:
            del self.fields["confirm_flagger"]

    def row_fields(self) -> list[tuple[forms.BoundField, forms.BoundField]]:
        return [(self[f"backend_{i}"], self[f"weight_{i}"]) for i in range(self.rows)]

    def clean(self) -> dict[str, object]:
        data = super().clean()
        if self.rows == 0:
            raise forms.ValidationError("A TrafficSplit needs at least one backend.")
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
        if self.canary is not None and not data.get("confirm_flagger"):
            self.add_error(
                "confirm_flagger",
                f"Flagger Canary {self.canary.name} manages this split and will overwrite the weights at its next "
                "step. Confirm to apply anyway.",
            )
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
                self.add_error(
                    f"weight_{i}",
                    f"Service {name} lacks the root's port {', '.join(gap)}: OSM would ignore this backend.",
                )

    def _check_namespace(self) -> None:
        split = self.split
        ns = MeshNamespace.objects.filter(cluster=split.cluster, name=split.namespace).first()
        if ns is None or not ns.monitored_by:
            raise forms.ValidationError(
                f"Namespace {split.namespace} is not in the mesh (no openservicemesh.io/monitored-by label): "
                "OSM ignores TrafficSplits there."
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

    def submitted_weights(self) -> list[int | None]:
        """What the user typed, as numbers where they are numbers (for presets and redisplay)."""
        values = []
        for i in range(self.rows):
            try:
                values.append(int(str(self.data.get(f"weight_{i}", "")).strip()))
            except ValueError:
                values.append(None)
        return values

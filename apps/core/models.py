from __future__ import annotations

from django.conf import settings
from django.db import models


class ThemePreference(models.Model):
    """A user's colour scheme: light, dark, or the system's. Kept on the server, so that it follows the user to any
    browser and the page is drawn in it from the first byte (no flash of the other scheme)."""

    class Theme(models.TextChoices):
        SYSTEM = "system", "system"
        LIGHT = "light", "light"
        DARK = "dark", "dark"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="theme_preference")
    theme = models.CharField(max_length=6, choices=Theme.choices, default=Theme.SYSTEM)

    def __str__(self) -> str:
        return f"{self.user} · {self.theme}"

from django.db import models


class Visit(models.Model):
    """One row per request to the revision page: proof the database works."""

    at = models.DateTimeField(auto_now_add=True)
    revision = models.CharField(max_length=64)

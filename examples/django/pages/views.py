"""Two pages: the deployed revision (what the deploy tests read) and a health check."""

from django.conf import settings
from django.http import HttpResponse

from .models import Visit


def _revision():
    try:
        return (settings.BASE_DIR / "REVISION").read_text().strip()
    except FileNotFoundError:
        return "unknown"


def revision(request):
    """The commit this release was deployed from (REVISION, written by Fake)."""
    rev = _revision()
    if request.GET.get("record"):
        Visit.objects.create(revision=rev)
    return HttpResponse(rev + "\n", content_type="text/plain")


def health(request):
    """200 once the app is loaded and answers (the health check's URL)."""
    return HttpResponse("ok\n", content_type="text/plain")

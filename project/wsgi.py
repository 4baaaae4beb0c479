import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings.prod")

django_application = get_wsgi_application()

from project.request_bodies import ChunkedBodies  # noqa: E402  (after Django is set up)

application = ChunkedBodies(django_application)

# Everything loaded so far (Django, DRF, numpy, scikit-learn: hundreds of thousands of objects)
# lives as long as the process. Frozen, the garbage collector stops re-scanning it every time a
# request allocates enough objects to trigger a collection: on a 1,000-row batch that scan
# took longer than the model itself (make bench).
gc.freeze()

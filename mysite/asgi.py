"""ASGI entry point: HTTP through Django, websockets through the example app's and pyhub_ai's routes."""
from __future__ import annotations

import gc
import os

from django.conf import settings
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
django_asgi_app = get_asgi_application()
if settings.SERVE_STATIC_FILES:
    # daphne alone serves no static files; behind a proxy that serves collectstatic's
    # output, set SERVE_STATIC_FILES=false.
    django_asgi_app = ASGIStaticFilesHandler(django_asgi_app)

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs the app registry)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

import pyhub_ai.routing  # noqa: E402
from example.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(
            # Last, the refusal of any other path (instead of a server error).
            websocket_urlpatterns + pyhub_ai.routing.websocket_urlpatterns + pyhub_ai.routing.not_found_urlpatterns
        ))),
    }
)

# What is loaded by now (Django, channels, LangChain, the apps) lives as long as the process.
# gc.freeze() takes it out of the garbage collector's full collections, which otherwise walk
# its ~220,000 objects again and again while replies stream: 1-3 ms less CPU per 200-token
# reply on the production benchmark (bench/prod_load.py; docs/deployment.md).
gc.collect()
gc.freeze()

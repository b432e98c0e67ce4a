"""URLs of the demo project: the admin, sign in/out, the example app and pyhub_ai's ready-made pages."""
from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.static import serve
from django.views.generic import RedirectView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="example:room_list", permanent=False)),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("example/", include("example.urls")),
    path("chat/", include("pyhub_ai.urls")),
]

if settings.SERVE_STATIC_FILES:
    # Tool results (images) saved by pyhub_ai; behind a proxy, serve MEDIA_ROOT there instead.
    urlpatterns += [re_path(r"^media/(?P<path>.*)$", serve, {"document_root": settings.MEDIA_ROOT})]

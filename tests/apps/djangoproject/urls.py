from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from djangoproject import views

urlpatterns = [
    path("", views.index),
    path("form", csrf_exempt(views.form)),
    path("upload", csrf_exempt(views.upload)),
    path("stream", views.stream),
    path("login", views.login),
    path("whoami", views.whoami),
    path("fail", views.fail),
]

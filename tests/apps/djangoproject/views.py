"""Views of the Django project for tests/apps."""

import hashlib
import os

from django.http import HttpResponse, HttpResponseRedirect, JsonResponse, StreamingHttpResponse


def index(request):
    return HttpResponse("Hello from Django", content_type="text/plain")


def form(request):
    return JsonResponse(request.POST.dict())


def upload(request):
    upload = request.FILES["file"]
    data = upload.read()
    return JsonResponse({"name": upload.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                         "field": request.POST.get("note")})


def stream(request):
    count = int(request.GET.get("n", "5"))
    return StreamingHttpResponse((f"part {i}\n" for i in range(count)), content_type="text/plain")


def login(request):
    response = HttpResponseRedirect("/whoami")
    response.set_cookie("user", "alice")
    return response


def whoami(request):
    return JsonResponse({"user": request.COOKIES.get("user"), "pid": os.getpid()})


def fail(request):
    raise RuntimeError("a Django view failing on purpose")

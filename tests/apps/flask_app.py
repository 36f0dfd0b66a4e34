"""A small Flask application for tests/apps/test_frameworks.py (tox -e apps)."""

import hashlib
import os

from flask import Flask, jsonify, make_response, redirect, request, stream_with_context

app = Flask(__name__)


@app.get("/")
def index():
    return "Hello from Flask"


@app.post("/form")
def form():
    return jsonify(dict(request.form))


@app.post("/upload")
def upload():
    upload = request.files["file"]
    data = upload.read()
    return jsonify(name=upload.filename, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                   field=request.form.get("note"))


@app.get("/stream")
def stream():
    def parts():
        for index in range(int(request.args.get("n", "5"))):
            yield f"part {index}\n"
    return app.response_class(stream_with_context(parts()), mimetype="text/plain")


@app.get("/login")
def login():
    response = make_response(redirect("/whoami"))
    response.set_cookie("user", "alice")
    return response


@app.get("/whoami")
def whoami():
    return jsonify(user=request.cookies.get("user"), pid=os.getpid())


@app.get("/fail")
def fail():
    raise RuntimeError("a Flask view failing on purpose")

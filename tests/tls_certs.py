"""Throw-away certificates for the TLS tests, made with the `openssl` command in a temp dir.

`make_certs(directory)` writes a CA, a server certificate for 127.0.0.1 / localhost signed by
it, a client certificate signed by it, and a self-signed client certificate the CA never
signed (the "wrong" client). EC P-256 keys keep it fast (a few milliseconds per key).
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Certs:
    """Paths of the PEM files (keys unencrypted)."""

    ca: str
    ca_key: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    rogue_cert: str
    rogue_key: str

    def client_context(self, *, with_cert: str | None = "client") -> ssl.SSLContext:
        """A client context that trusts the CA; `with_cert` = "client", "rogue" or None."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(self.ca)
        if with_cert == "client":
            context.load_cert_chain(self.client_cert, self.client_key)
        elif with_cert == "rogue":
            context.load_cert_chain(self.rogue_cert, self.rogue_key)
        return context


def have_openssl() -> bool:
    return shutil.which("openssl") is not None


def _run(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _key(name: str, cwd: str) -> None:
    _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name, cwd=cwd)


def _leaf(name: str, cn: str, extensions: str, cwd: str) -> None:
    """A key, a CSR and a certificate signed by ca.pem with the given extensions."""
    _key(f"{name}.key", cwd)
    _run("req", "-new", "-key", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=cwd)
    with open(os.path.join(cwd, f"{name}.ext"), "w") as ext:
        ext.write(extensions + "\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\nbasicConstraints=critical,CA:FALSE\n")
    _run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "3", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=cwd)


def _self_signed(name: str, cn: str, extra: list[str], cwd: str) -> None:
    _key(f"{name}.key", cwd)
    args = ["req", "-x509", "-new", "-key", f"{name}.key", "-out", f"{name}.pem", "-days", "3", "-sha256", "-subj", f"/CN={cn}"]
    for ext in extra:
        args += ["-addext", ext]
    _run(*args, cwd=cwd)


def make_certs(directory: str) -> Certs:
    """Create every file in `directory` (which must exist) and return their paths."""
    _self_signed("ca", "threadswoole test CA", ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign", "subjectKeyIdentifier=hash"], directory)
    _leaf("server", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature", directory)
    _leaf("client", "threadswoole test client", "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature", directory)
    _self_signed("rogue", "rogue client", ["extendedKeyUsage=clientAuth"], directory)
    path = lambda name: os.path.join(directory, name)  # noqa: E731
    return Certs(path("ca.pem"), path("ca.key"), path("server.pem"), path("server.key"), path("client.pem"), path("client.key"), path("rogue.pem"), path("rogue.key"))

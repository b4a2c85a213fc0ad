"""Certificates for the mTLS link to the SMS Core: development CA and leaf certificates,
client-certificate rotation, and verification of an installed set.

Development layout (`MC_DATA_DIR/certs/`):

    ca.pem  ca.key            the installation CA (the key stays here only in development)
    server.pem  server.key    the reference Core's certificate (SAN 127.0.0.1, localhost)
    client.pem  client.key    Message Center's client certificate

Private keys are written with mode 0600. Every file is written to a temporary file in the
same directory and moved into place (`os.replace`), so a reader — the gateway watching the
files for hot rotation — never sees a half-written file.
"""
import datetime as dt
import ipaddress
import os
import tempfile
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 825
EXPIRY_WARN_DAYS = 30

FILES = ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key")


class CertError(RuntimeError):
    """A certificate operation cannot be done (missing CA key, unreadable file, …)."""


def certs_dir(data_dir):
    return os.path.join(data_dir, "certs")


def _now():
    return dt.datetime.now(dt.UTC)


def _new_key():
    return ec.generate_private_key(ec.SECP256R1())


def _write(path, data, private=False):
    """Atomically write `data` (bytes) to `path`; private files get mode 0600."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)  # holds private keys
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)  # mkstemp creates with 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600 if private else 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(path):
    try:
        with open(path, "rb") as fh:
            return x509.load_pem_x509_certificate(fh.read())
    except FileNotFoundError:
        raise CertError(f"{path} does not exist") from None
    except ValueError as exc:
        raise CertError(f"{path} is not a PEM certificate ({exc})") from None


def load_key(path):
    try:
        with open(path, "rb") as fh:
            return serialization.load_pem_private_key(fh.read(), password=None)
    except FileNotFoundError:
        raise CertError(f"{path} does not exist") from None
    except (ValueError, TypeError) as exc:
        raise CertError(f"{path} is not an unencrypted PEM private key ({exc})") from None


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Message Center (development)"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn="Message Center Dev CA", days=CA_DAYS):
    """Return (certificate, key) of a new self-signed CA."""
    key = _new_key()
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(ca_cert, ca_key, cn, kind, days=LEAF_DAYS, sans=()):
    """Return (certificate, key) of a new `kind` ("server" or "client") certificate signed by the CA."""
    key = _new_key()
    now = _now()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if kind == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if sans:
        names: list[x509.GeneralName] = []
        for san in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                names.append(x509.DNSName(san))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _issue_pair(directory, stem, ca_cert, ca_key, kind, cn, sans=(), days=LEAF_DAYS):
    cert, key = make_leaf(ca_cert, ca_key, cn, kind, days=days, sans=sans)
    # Key first, then certificate: a watcher that reloads in between sees a mismatch and keeps
    # its previous context until both files are in place.
    _write(os.path.join(directory, f"{stem}.key"), _key_pem(key), private=True)
    _write(os.path.join(directory, f"{stem}.pem"), _cert_pem(cert))
    return cert


def generate_dev(directory, force=False, server_names=("127.0.0.1", "localhost")):
    """Create the development set in `directory`. Returns the list of files written.

    Idempotent: nothing is written when the whole set exists. Missing leaf pairs are issued
    from an existing CA; an incomplete set without a usable CA needs `force=True`, which
    regenerates everything (CA included).
    """
    present = {name for name in FILES if os.path.exists(os.path.join(directory, name))}
    if not force and present == set(FILES):
        return []
    written = []
    if force or not {"ca.pem", "ca.key"} <= present:
        if present - {"ca.pem", "ca.key"} and not force:
            raise CertError(f"{directory} holds certificates but no complete CA (ca.pem + ca.key); "
                            "use --force to regenerate the whole set")
        ca_cert, ca_key = make_ca()
        _write(os.path.join(directory, "ca.key"), _key_pem(ca_key), private=True)
        _write(os.path.join(directory, "ca.pem"), _cert_pem(ca_cert))
        written += ["ca.pem", "ca.key"]
        present = set()  # a new CA invalidates every leaf
    else:
        ca_cert, ca_key = load_cert(os.path.join(directory, "ca.pem")), load_key(os.path.join(directory, "ca.key"))
    if not {"server.pem", "server.key"} <= present:
        _issue_pair(directory, "server", ca_cert, ca_key, "server", "sms-core", sans=server_names)
        written += ["server.pem", "server.key"]
    if not {"client.pem", "client.key"} <= present:
        _issue_pair(directory, "client", ca_cert, ca_key, "client", "message-center")
        written += ["client.pem", "client.key"]
    return written


def issue_client_cert(ca_cert_path, ca_key_path, cert_path, key_path, cn="message-center", days=LEAF_DAYS):
    """Issue a new client certificate from an existing CA and install it over `cert_path` /
    `key_path` (atomic replace; the gateway picks it up on its next call). Returns the new
    certificate (its `.serial_number` is what the Core sees)."""
    ca_cert, ca_key = load_cert(ca_cert_path), load_key(ca_key_path)
    cert, key = make_leaf(ca_cert, ca_key, cn, "client", days=days)
    _write(key_path, _key_pem(key), private=True)
    _write(cert_path, _cert_pem(cert))
    return cert


# --- verification -------------------------------------------------------------------------

@dataclass
class Check:
    status: str  # "ok", "warn", "fail", "skip"
    message: str

    def line(self):
        return f"[{self.status.upper():4}] {self.message}"


def _public_bytes(public_key):
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _expiry_check(label, cert, now, warn_days):
    left = cert.not_valid_after_utc - now
    until = cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC")
    if cert.not_valid_before_utc > now:
        return Check("fail", f"{label} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M UTC}")
    if left.total_seconds() <= 0:
        return Check("fail", f"{label} expired on {until}")
    if left < dt.timedelta(days=warn_days):
        return Check("warn", f"{label} expires in {left.days} days ({until}) — rotate it soon")
    return Check("ok", f"{label} valid until {until} ({left.days} days left)")


def verify(ca_path, pairs, warn_days=EXPIRY_WARN_DAYS):
    """Check a certificate set: the CA, then for each `pairs` entry (label -> (cert_path, key_path))
    that the certificate is signed by the CA, that the key matches it, and its expiry
    (warning under `warn_days`). Returns a list of Check; never raises."""
    checks = []
    now = _now()
    try:
        ca = load_cert(ca_path)
        checks.append(Check("ok", f"CA {ca_path}: {ca.subject.rfc4514_string()}"))
    except CertError as exc:
        return [Check("fail", f"CA: {exc}")]
    try:
        ca.verify_directly_issued_by(ca)
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        if not constraints.ca:
            raise ValueError("basicConstraints CA:FALSE")
        checks.append(Check("ok", "CA is a self-signed CA certificate"))
    except Exception as exc:  # noqa: BLE001 - InvalidSignature, ExtensionNotFound, …: report, never raise
        checks.append(Check("warn", f"CA is not a self-signed root ({exc}); assuming an intermediate"))
    checks.append(_expiry_check("CA", ca, now, warn_days))

    for label, (cert_path, key_path) in pairs.items():
        try:
            cert = load_cert(cert_path)
        except CertError as exc:
            checks.append(Check("fail", f"{label} certificate: {exc}"))
            continue
        try:
            cert.verify_directly_issued_by(ca)
            checks.append(Check("ok", f"{label} certificate {cert_path} is signed by the CA "
                                      f"(serial {cert.serial_number:x})"))
        except Exception as exc:  # noqa: BLE001 - InvalidSignature, ValueError, TypeError
            checks.append(Check("fail", f"{label} certificate {cert_path} is NOT signed by the CA "
                                        f"({type(exc).__name__}: {exc or 'signature mismatch'})"))
        try:
            key = load_key(key_path)
            if _public_bytes(key.public_key()) == _public_bytes(cert.public_key()):
                checks.append(Check("ok", f"{label} key {key_path} matches its certificate"))
            else:
                checks.append(Check("fail", f"{label} key {key_path} does NOT match {cert_path}"))
        except CertError as exc:
            checks.append(Check("fail", f"{label} key: {exc}"))
        checks.append(_expiry_check(f"{label} certificate", cert, now, warn_days))
    return checks


def verify_installation(config):
    """Checks for the configured client set (CORE_CA, CORE_CLIENT_CERT, CORE_CLIENT_KEY) and,
    when present under MC_DATA_DIR/certs, the reference Core's server pair."""
    pairs = {"client": (config["CORE_CLIENT_CERT"], config["CORE_CLIENT_KEY"])}
    directory = certs_dir(config["MC_DATA_DIR"])
    server = (os.path.join(directory, "server.pem"), os.path.join(directory, "server.key"))
    skipped = []
    if os.path.exists(server[0]) or os.path.exists(server[1]):
        pairs["server"] = server
    else:
        skipped.append(Check("skip", f"no server certificate in {directory} (only the reference Core needs one)"))
    return verify(config["CORE_CA"], pairs) + skipped

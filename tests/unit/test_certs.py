"""Development certificates, client rotation and verification (services/certs.py) and the
`flask certs` commands."""
import ipaddress
import os
import shutil
import stat

import pytest
from cryptography import x509

from blueprints.certs_cli import certs_cli
from services import certs


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_generate_dev_writes_the_set_with_private_keys_0600(tmp_path):
    directory = str(tmp_path / "certs")
    assert sorted(certs.generate_dev(directory)) == sorted(certs.FILES)
    for name in certs.FILES:
        assert mode(os.path.join(directory, name)) == (0o600 if name.endswith(".key") else 0o644)
    assert not [n for n in os.listdir(directory) if n.startswith(".tmp-")]

    server = certs.load_cert(os.path.join(directory, "server.pem"))
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    ca = certs.load_cert(os.path.join(directory, "ca.pem"))
    for leaf in ("server.pem", "client.pem"):
        certs.load_cert(os.path.join(directory, leaf)).verify_directly_issued_by(ca)


def test_generate_dev_is_idempotent_and_force_regenerates(tmp_path):
    directory = str(tmp_path)
    certs.generate_dev(directory)
    before = {n: open(os.path.join(directory, n), "rb").read() for n in certs.FILES}
    assert certs.generate_dev(directory) == []
    assert before == {n: open(os.path.join(directory, n), "rb").read() for n in certs.FILES}
    assert sorted(certs.generate_dev(directory, force=True)) == sorted(certs.FILES)
    assert open(os.path.join(directory, "ca.pem"), "rb").read() != before["ca.pem"]


def test_missing_leaf_is_issued_from_the_existing_ca(tmp_path):
    directory = str(tmp_path)
    certs.generate_dev(directory)
    ca_before = open(tmp_path / "ca.pem", "rb").read()
    os.remove(tmp_path / "client.key")
    assert certs.generate_dev(directory) == ["client.pem", "client.key"]
    assert open(tmp_path / "ca.pem", "rb").read() == ca_before
    assert all(c.status == "ok" for c in certs.verify(
        str(tmp_path / "ca.pem"), {"client": (str(tmp_path / "client.pem"), str(tmp_path / "client.key"))}))


def test_leaves_without_a_ca_need_force(tmp_path):
    certs.generate_dev(str(tmp_path))
    os.remove(tmp_path / "ca.key")
    with pytest.raises(certs.CertError, match="--force"):
        certs.generate_dev(str(tmp_path))


def test_issue_client_cert_replaces_the_pair(tmp_path):
    certs.generate_dev(str(tmp_path))
    old = certs.load_cert(str(tmp_path / "client.pem"))
    new = certs.issue_client_cert(str(tmp_path / "ca.pem"), str(tmp_path / "ca.key"), str(tmp_path / "client.pem"),
                                  str(tmp_path / "client.key"))
    assert new.serial_number != old.serial_number
    assert certs.load_cert(str(tmp_path / "client.pem")).serial_number == new.serial_number
    assert mode(tmp_path / "client.key") == 0o600


def test_verify_reports_expiry(tmp_path):
    certs.generate_dev(str(tmp_path))
    ca, ca_key = str(tmp_path / "ca.pem"), str(tmp_path / "ca.key")
    soon = (str(tmp_path / "soon.pem"), str(tmp_path / "soon.key"))
    certs.issue_client_cert(ca, ca_key, *soon, days=10)
    checks = certs.verify(ca, {"client": soon})
    assert [c.status for c in checks if "valid until" in c.message or "expire" in c.message] == ["ok", "warn"]
    gone = (str(tmp_path / "gone.pem"), str(tmp_path / "gone.key"))
    certs.issue_client_cert(ca, ca_key, *gone, days=0)
    assert any(c.status == "fail" and "expired" in c.message for c in certs.verify(ca, {"client": gone}))


def test_verify_fails_for_a_certificate_of_another_ca(tmp_path):
    certs.generate_dev(str(tmp_path / "a"))
    certs.generate_dev(str(tmp_path / "b"))
    checks = certs.verify(str(tmp_path / "a" / "ca.pem"),
                          {"client": (str(tmp_path / "b" / "client.pem"), str(tmp_path / "b" / "client.key"))})
    assert any(c.status == "fail" and "NOT signed by the CA" in c.message for c in checks)


# --- flask certs ---------------------------------------------------------------------------

@pytest.fixture
def cli(app, tmp_path, monkeypatch):
    app.cli.add_command(certs_cli)
    monkeypatch.setitem(app.config, "MC_DATA_DIR", str(tmp_path))
    for key, name in (("CORE_CLIENT_CERT", "client.pem"), ("CORE_CLIENT_KEY", "client.key"), ("CORE_CA", "ca.pem")):
        monkeypatch.setitem(app.config, key, str(tmp_path / "certs" / name))
    runner = app.test_cli_runner()
    return lambda *args: runner.invoke(args=["certs", *args])


def test_cli_dev_then_verify_passes(cli, tmp_path):
    result = cli("dev")
    assert result.exit_code == 0, result.output
    assert "Wrote" in result.output and os.path.exists(tmp_path / "certs" / "client.key")
    assert "already present" in cli("dev").output

    result = cli("verify")
    assert result.exit_code == 0, result.output
    assert "client certificate" in result.output and "server key" in result.output
    assert "[FAIL]" not in result.output and "Certificates OK" in result.output


def test_cli_verify_fails_when_the_client_key_does_not_match(cli, tmp_path):
    assert cli("dev").exit_code == 0
    shutil.copy(tmp_path / "certs" / "server.key", tmp_path / "certs" / "client.key")
    result = cli("verify")
    assert result.exit_code != 0
    assert "[FAIL] client key" in result.output and "does NOT match" in result.output


def test_cli_verify_fails_without_certificates(cli):
    result = cli("verify")
    assert result.exit_code != 0 and "[FAIL]" in result.output


def test_cli_rotate_client(cli, tmp_path):
    assert cli("dev").exit_code == 0
    old = certs.load_cert(str(tmp_path / "certs" / "client.pem")).serial_number
    result = cli("rotate-client")
    assert result.exit_code == 0, result.output
    new = certs.load_cert(str(tmp_path / "certs" / "client.pem")).serial_number
    assert new != old and f"{new:x}" in result.output
    assert cli("verify").exit_code == 0

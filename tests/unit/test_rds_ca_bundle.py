"""The RDS CA bundle shipped in the KnowledgeLayer: every region's roots, each a valid self-signed CA."""

import datetime as dt
import re
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from knowledge.config import RDS_CA_BUNDLE

# Regions the platform deploys to or fails over to (docs/dr.md); each needs its RSA2048 root.
REGIONS = ("us-east-1", "us-west-2", "eu-west-1")


def _certificates() -> list[x509.Certificate]:
    pem = Path(RDS_CA_BUNDLE).read_bytes()
    blocks = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.S)
    return [x509.load_pem_x509_certificate(block) for block in blocks]


def _common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_the_bundle_ships_with_the_layer_and_holds_only_rds_authorities() -> None:
    certs = _certificates()
    assert len(certs) >= 60
    assert all(_common_name(cert).startswith("Amazon RDS ") for cert in certs)
    names = {_common_name(cert) for cert in certs}
    for region in REGIONS:
        assert f"Amazon RDS {region} Root CA RSA2048 G1" in names


def test_every_authority_is_a_self_signed_ca_valid_beyond_the_next_decade() -> None:
    horizon = dt.datetime(2036, 1, 1, tzinfo=dt.UTC)
    for cert in _certificates():
        assert cert.issuer == cert.subject
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        cert.verify_directly_issued_by(cert)  # raises when the signature does not match
        assert cert.not_valid_after_utc > horizon

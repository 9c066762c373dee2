#!/usr/bin/env python3
"""Makes the JWKS and the bearer tokens for scripts/bench-oidc.sh.

usage: tokens.py DIR ISSUER AUDIENCE

DIR holds es256.key (EC P-256) and rs256.key (RSA 2048), PEM, made by
openssl at run time. Writes into DIR:

  jwks.json      both public keys (kid, alg, use), for Envoy's local_jwks
                 and for the proxy's jwksUri
  es256.jwt      a token signed with the EC key (ES256)
  rs256.jwt      a token signed with the RSA key (RS256)
  tampered.jwt   es256.jwt with one signature byte changed (must get 401)
  expired.jwt    an ES256 token whose exp is an hour in the past (401)

Only the Python standard library and the openssl command line: openssl
signs, and an ECDSA signature, which openssl gives as DER, becomes the raw
32-byte r || 32-byte s that JWS (RFC 7518, 3.4) wants.
"""
import base64
import json
import os
import subprocess
import sys
import time

ES256_KID = "bench-es256"
RS256_KID = "bench-rs256"
# A year: far past any benchmark run, and not so far that an "unreasonable
# expiry" check in a validator could trip.
LIFETIME = 365 * 24 * 3600


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def openssl(*args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def der_length(buf: bytes, i: int) -> tuple[int, int]:
    """Reads a DER length at buf[i]; returns (length, index after it)."""
    first = buf[i]
    if first < 0x80:
        return first, i + 1
    n = first & 0x7F
    return int.from_bytes(buf[i + 1 : i + 1 + n], "big"), i + 1 + n


def ecdsa_der_to_raw(der: bytes, size: int = 32) -> bytes:
    """ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } -> r || s."""
    if der[0] != 0x30:
        raise ValueError("ECDSA signature is not a DER SEQUENCE")
    _, i = der_length(der, 1)
    out = b""
    for _ in range(2):
        if der[i] != 0x02:
            raise ValueError("ECDSA signature: INTEGER expected")
        n, i = der_length(der, i + 1)
        value = der[i : i + n].lstrip(b"\x00")
        i += n
        if len(value) > size:
            raise ValueError("ECDSA signature: integer longer than the curve")
        out += value.rjust(size, b"\x00")
    return out


def ec_public_jwk(key: str) -> dict:
    # The SubjectPublicKeyInfo of a P-256 key ends with the uncompressed
    # point 04 || X || Y (65 bytes).
    spki = openssl("pkey", "-in", key, "-pubout", "-outform", "DER")
    point = spki[-65:]
    if point[0] != 0x04:
        raise ValueError(f"{key}: not an uncompressed P-256 point")
    return {"kty": "EC", "crv": "P-256", "x": b64url(point[1:33]), "y": b64url(point[33:]),
            "kid": ES256_KID, "alg": "ES256", "use": "sig"}


def rsa_public_jwk(key: str) -> dict:
    modulus = openssl("rsa", "-in", key, "-noout", "-modulus").decode().strip()
    if not modulus.startswith("Modulus="):
        raise ValueError(f"{key}: no modulus")
    n = bytes.fromhex(modulus[len("Modulus="):])
    text = openssl("rsa", "-in", key, "-noout", "-text").decode()
    exponent = next(line for line in text.splitlines() if line.startswith("publicExponent:"))
    e = int(exponent.split()[1])
    return {"kty": "RSA", "n": b64url(n), "e": b64url(e.to_bytes((e.bit_length() + 7) // 8, "big")),
            "kid": RS256_KID, "alg": "RS256", "use": "sig"}


def sign(key: str, alg: str, kid: str, claims: dict) -> str:
    header = {"alg": alg, "typ": "JWT", "kid": kid}
    signing_input = (b64url(json.dumps(header, separators=(",", ":")).encode()) + "."
                     + b64url(json.dumps(claims, separators=(",", ":")).encode()))
    # RSA keys: PKCS #1 v1.5 (RS256), openssl dgst's default.
    sig = openssl("dgst", "-sha256", "-sign", key, data=signing_input.encode())
    if alg == "ES256":
        sig = ecdsa_der_to_raw(sig)
    return signing_input + "." + b64url(sig)


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    out, issuer, audience = sys.argv[1:]
    es_key, rs_key = os.path.join(out, "es256.key"), os.path.join(out, "rs256.key")
    now = int(time.time())
    claims = {"iss": issuer, "aud": audience, "sub": "bench-client", "scope": "bench.read",
              "iat": now, "exp": now + LIFETIME}
    jwks = {"keys": [ec_public_jwk(es_key), rsa_public_jwk(rs_key)]}
    tokens = {
        "es256": sign(es_key, "ES256", ES256_KID, claims),
        "rs256": sign(rs_key, "RS256", RS256_KID, claims),
        "expired": sign(es_key, "ES256", ES256_KID, dict(claims, iat=now - 7200, exp=now - 3600)),
    }
    # Change a byte in the middle of the signature, not the last character,
    # whose low bits base64url may not carry.
    head, payload, sig = tokens["es256"].split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[len(raw) // 2] ^= 0x01
    tokens["tampered"] = f"{head}.{payload}.{b64url(bytes(raw))}"
    with open(os.path.join(out, "jwks.json"), "w", encoding="utf-8") as f:
        json.dump(jwks, f)
    for name, token in tokens.items():
        with open(os.path.join(out, f"{name}.jwt"), "w", encoding="ascii") as f:
            f.write(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())

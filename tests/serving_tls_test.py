"""The server binds loopback by default and serves gRPC over TLS (and mutual TLS)
when configured; a plaintext client cannot talk to a TLS server."""

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
import grpc
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

from duia.serving import client as client_lib
from duia.serving import server as server_lib
from duia.serving import server_flags
from duia.serving import tls
from tests import serving_fixtures as fx


def _write_identity(directory, name, issuer_key=None, issuer_cert=None):
  """A key and a certificate for 127.0.0.1/localhost, self-signed unless an issuer is given."""
  key = ec.generate_private_key(ec.SECP256R1())
  subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
  now = datetime.datetime.now(datetime.timezone.utc)
  cert = (x509.CertificateBuilder()
          .subject_name(subject)
          .issuer_name(issuer_cert.subject if issuer_cert else subject)
          .public_key(key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.SubjectAlternativeName(
              [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
              critical=False)
          .add_extension(x509.BasicConstraints(ca=issuer_cert is None, path_length=None),
                         critical=True)
          .sign(issuer_key or key, hashes.SHA256()))
  key_path, cert_path = directory / f"{name}.key", directory / f"{name}.pem"
  key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
  cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
  return str(cert_path), str(key_path), key, cert


def _predict_over(channel):
  stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
  return stub.Predict(fx.good_request(), timeout=10).model_spec.version.value


def test_loopback_is_the_default_bind_address():
  assert server_lib.ServerConfig("/models").host == "127.0.0.1"
  assert server_flags.build_parser().parse_args(["--model_base_path=/m"]).host == "127.0.0.1"


def test_tls_server_answers_tls_clients_only(tmp_path):
  cert, key, _, _ = _write_identity(tmp_path, "server")
  root = fx.model_root(tmp_path, {1: 1.0})
  server, port = server_lib.start_server(str(root), tls=tls.TlsConfig(cert, key))
  try:
    with grpc.secure_channel(f"127.0.0.1:{port}", tls.channel_credentials(cert)) as channel:
      assert _predict_over(channel) == 1
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
      with pytest.raises(grpc.RpcError) as info:
        _predict_over(channel)
      assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    # The ranking client over TLS, and the server still serves after the plaintext try.
    ranking = client_lib.RankingClient(f"127.0.0.1:{port}",
                                       credentials=tls.channel_credentials(cert))
    with ranking:
      ranked = ranking.rank(fx.USER, fx.CANDIDATES, fx.TS)
    assert len(ranked) == len(fx.CANDIDATES)
  finally:
    server.stop(None)


def test_mutual_tls_rejects_a_client_without_a_certificate(tmp_path):
  ca_cert, _, ca_key, ca = _write_identity(tmp_path, "ca")
  cert, key, _, _ = _write_identity(tmp_path, "server", ca_key, ca)
  client_cert, client_key, _, _ = _write_identity(tmp_path, "client", ca_key, ca)
  root = fx.model_root(tmp_path, {1: 1.0})
  server, port = server_lib.start_server(
      str(root), tls=tls.TlsConfig(cert, key, client_ca_file=ca_cert))
  try:
    credentials = tls.channel_credentials(ca_cert, client_cert, client_key)
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
      assert _predict_over(channel) == 1
    with grpc.secure_channel(f"127.0.0.1:{port}", tls.channel_credentials(ca_cert)) as channel:
      with pytest.raises(grpc.RpcError) as info:
        _predict_over(channel)
      assert info.value.code() == grpc.StatusCode.UNAVAILABLE
  finally:
    server.stop(None)


def test_tls_config_errors_name_the_problem(tmp_path):
  with pytest.raises(ValueError, match="REST has no TLS"):
    server_lib.ServerConfig("/models", rest_api_port=8501, tls=tls.TlsConfig("c.pem", "k.pem"))
  with pytest.raises(ValueError, match="Cannot read the TLS key file 'missing.key'"):
    tls.TlsConfig("c.pem", "missing.key").server_credentials()
  with pytest.raises(ValueError, match="needs its key"):
    tls.channel_credentials("ca.pem", cert_file="client.pem")
  args = server_flags.build_parser().parse_args(["--model_base_path=/m", "--ssl_cert_file=c.pem"])
  with pytest.raises(ValueError, match="both --ssl_cert_file and --ssl_key_file"):
    server_flags.config_from_args(args)
  args = server_flags.build_parser().parse_args(
      ["--model_base_path=/m", "--ssl_cert_file=c.pem", "--ssl_key_file=k.pem"])
  assert server_flags.config_from_args(args).tls == tls.TlsConfig("c.pem", "k.pem")

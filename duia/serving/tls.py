"""TLS for the gRPC front end, off by default.

The fields follow TF Serving's `SSLConfig` (`--ssl_config_file`: server_key,
server_cert, custom_ca, client_verify), read from PEM files instead of a text
proto because tensorflow-serving-api does not ship that proto's Python module.
With a client CA the server also verifies clients (mutual TLS).
"""

import dataclasses
from typing import Optional

import grpc


def _read(path: str, what: str) -> bytes:
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError as e:
    raise ValueError(f"Cannot read the TLS {what} {path!r}: {e}") from e


@dataclasses.dataclass(frozen=True)
class TlsConfig:
  """PEM files of the server's TLS identity.

  Attributes:
    cert_file: The server certificate chain (TF Serving's `server_cert`).
    key_file: Its private key (`server_key`).
    client_ca_file: If set, clients must present a certificate signed by this
      CA (`custom_ca` with `client_verify`).
  """

  cert_file: str
  key_file: str
  client_ca_file: Optional[str] = None

  def server_credentials(self) -> grpc.ServerCredentials:
    """gRPC server credentials; raises ValueError naming an unreadable file."""
    key = _read(self.key_file, "key file")
    cert = _read(self.cert_file, "certificate file")
    client_ca = _read(self.client_ca_file, "client CA file") if self.client_ca_file else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


def channel_credentials(ca_file: str, cert_file: Optional[str] = None,
                        key_file: Optional[str] = None) -> grpc.ChannelCredentials:
  """Client credentials trusting `ca_file`, with a client identity for mutual TLS.

  Raises:
    ValueError: naming a file that cannot be read, or a cert without its key.
  """
  if bool(cert_file) != bool(key_file):
    raise ValueError("A client certificate needs its key and the other way round. "
                     f"Received: cert_file={cert_file!r}, key_file={key_file!r}")
  return grpc.ssl_channel_credentials(
      root_certificates=_read(ca_file, "CA file"),
      private_key=_read(key_file, "client key file") if key_file else None,
      certificate_chain=_read(cert_file, "client certificate file") if cert_file else None)

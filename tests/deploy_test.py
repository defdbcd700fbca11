"""Static checks of the TF Serving deployment files (deploy/, docs/serving.md).

There is no tensorflow_model_server, Docker engine or Kubernetes cluster on
the build machine, so these tests parse the files with the same protos and a
YAML loader and check what the server and the cluster would read.

The installed tensorflow-serving-api (2.16.1) ships `tensorflow_serving.config`
(ModelServerConfig) but not
`tensorflow_serving.servables.tensorflow.session_bundle_config_pb2`, so the
`BatchingParameters` message is rebuilt here from the upstream proto.
"""

import json
import os
import re

import pytest
import yaml
from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format
from google.protobuf import wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

from duia.models import features
from duia.pipeline import configs

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TFSERVING_DIR = os.path.join(REPO_ROOT, "deploy", "tfserving")
KUBERNETES_DIR = os.path.join(REPO_ROOT, "deploy", "kubernetes")
MODELS_CONFIG = os.path.join(TFSERVING_DIR, "models.config")
BATCHING_FILE = os.path.join(TFSERVING_DIR, "batching_parameters.txt")
SERVING_DOC = os.path.join(REPO_ROOT, "docs", "serving.md")

IMAGE = "tensorflow/serving:2.16.1"
GRPC_PORT, HTTP_PORT = 8500, 8501
CONFIG_MOUNT, MODELS_MOUNT = "/config", "/models"
MODELS_PVC = "duia-models"


def _read(path: str) -> str:
  with open(path, encoding="utf-8") as f:
    return f.read()


# --- BatchingParameters without session_bundle_config_pb2 -------------------------

# Fields 1-7 of tensorflow.serving.BatchingParameters, as declared in
# tensorflow_serving/servables/tensorflow/session_bundle_config.proto
# (tensorflow/serving@03f8b6b5fceec0df896da1e85d02b101b4ff2b7a). Later upstream
# versions only add fields, so a file using these parses the same there.
_I64 = ".google.protobuf.Int64Value"
_BATCHING_FIELDS = (
    ("max_batch_size", 1, _I64, False),
    ("batch_timeout_micros", 2, _I64, False),
    ("max_enqueued_batches", 3, _I64, False),
    ("num_batch_threads", 4, _I64, False),
    ("thread_pool_name", 5, ".google.protobuf.StringValue", False),
    ("allowed_batch_sizes", 6, None, True),
    ("pad_variable_length_inputs", 7, None, False),
)


def _batching_parameters_class():
  """Returns a message class for tensorflow.serving.BatchingParameters."""
  pool = descriptor_pool.DescriptorPool()
  wrappers = descriptor_pb2.FileDescriptorProto()
  wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
  pool.Add(wrappers)
  file_proto = descriptor_pb2.FileDescriptorProto(
      name="duia_test/session_bundle_config.proto",
      package="tensorflow.serving",
      syntax="proto3",
      dependency=["google/protobuf/wrappers.proto"])
  message = file_proto.message_type.add(name="BatchingParameters")
  field_type = descriptor_pb2.FieldDescriptorProto
  for name, number, type_name, repeated in _BATCHING_FIELDS:
    field = message.field.add(name=name, number=number, json_name=name)
    field.label = (field_type.LABEL_REPEATED if repeated
                   else field_type.LABEL_OPTIONAL)
    if type_name:
      field.type, field.type_name = field_type.TYPE_MESSAGE, type_name
    elif repeated:
      field.type = field_type.TYPE_INT64
    else:
      field.type = field_type.TYPE_BOOL
  pool.Add(file_proto)
  descriptor = pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")
  return message_factory.MessageFactory(pool).GetPrototype(descriptor)


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_server_config():
  return text_format.Parse(_read(MODELS_CONFIG),
                           model_server_config_pb2.ModelServerConfig())


@pytest.fixture(scope="module")
def batching():
  return text_format.Parse(_read(BATCHING_FILE), _batching_parameters_class()())


@pytest.fixture(scope="module")
def manifests():
  """{kind: [document, ...]} over every YAML file in deploy/kubernetes."""
  by_kind = {}
  for name in sorted(os.listdir(KUBERNETES_DIR)):
    if name.endswith((".yaml", ".yml")):
      for doc in yaml.safe_load_all(_read(os.path.join(KUBERNETES_DIR, name))):
        if doc is not None:
          by_kind.setdefault(doc["kind"], []).append(doc)
  return by_kind


def _one(manifests, kind):
  assert len(manifests.get(kind, [])) == 1, f"expected one {kind}"
  return manifests[kind][0]


@pytest.fixture(scope="module")
def container(manifests):
  containers = _one(manifests, "Deployment")["spec"]["template"]["spec"]["containers"]
  assert len(containers) == 1
  return containers[0]


@pytest.fixture(scope="module")
def pod_spec(manifests):
  return _one(manifests, "Deployment")["spec"]["template"]["spec"]


def _args(container):
  """--flag=value args as a dict (a bare --flag maps to "")."""
  out = {}
  for arg in container["args"]:
    flag, _, value = arg.partition("=")
    assert flag not in out, f"{flag} given twice"
    out[flag] = value
  return out


def _mount(container, volume_name):
  mounts = [m for m in container["volumeMounts"] if m["name"] == volume_name]
  assert len(mounts) == 1, f"expected one mount of volume {volume_name}"
  return mounts[0]


def _volume(pod_spec, volume_name):
  volumes = [v for v in pod_spec["volumes"] if v["name"] == volume_name]
  assert len(volumes) == 1, f"expected one volume {volume_name}"
  return volumes[0]


def _config_volume_name(pod_spec, container):
  names = [m["name"] for m in container["volumeMounts"]
           if m["mountPath"] == CONFIG_MOUNT]
  assert len(names) == 1, f"nothing mounted at {CONFIG_MOUNT}"
  return names[0]


# --- models.config --------------------------------------------------------------------


def test_models_config_serves_duia_with_latest_two_versions(model_server_config):
  assert model_server_config.WhichOneof("config") == "model_config_list"
  model_configs = model_server_config.model_config_list.config
  assert len(model_configs) == 1
  model = model_configs[0]
  assert model.name == configs.MODEL_NAME == "duia"
  assert model.base_path == f"{MODELS_MOUNT}/duia"
  assert model.model_platform == "tensorflow"
  policy = model.model_version_policy
  assert policy.WhichOneof("policy_choice") == "latest"
  assert policy.latest.num_versions == 2


def test_models_config_version_labels_only_as_a_commented_example(
    model_server_config):
  # Labels on versions that are not loaded yet fail the server's start
  # (unless --allow_version_labels_for_unavailable_models), so none are live.
  assert not model_server_config.model_config_list.config[0].version_labels
  commented = [line for line in _read(MODELS_CONFIG).splitlines()
               if line.lstrip().startswith("#")]
  assert any("version_labels {" in line for line in commented)
  assert any("already loaded" in line for line in commented)


# --- batching_parameters.txt ----------------------------------------------------------


def test_batching_parameters_parse_with_cpu_defaults(batching, container):
  for field in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                "num_batch_threads"):
    assert batching.HasField(field), f"{field} not set"
  cpu_limit = int(container["resources"]["limits"]["cpu"])
  # The guide's CPU-only recipe: threads = cores, timeout starting at 0.
  assert batching.num_batch_threads.value == cpu_limit
  assert batching.batch_timeout_micros.value == 0
  # Online serving: queue bounded to about one batch per thread.
  assert batching.max_enqueued_batches.value == batching.num_batch_threads.value
  # A request larger than max_batch_size is rejected, so leave room for a
  # ranking request's candidates.
  assert batching.max_batch_size.value >= 512


def test_batching_file_documents_the_rank_signature_caveat():
  text = _read(BATCHING_FILE)
  assert features.SERVING_RAW_SIGNATURE == "rank"
  assert "0th-dimension" in text
  assert "rank signature cannot use TF Serving's batching" in text
  assert "WITHOUT\n#     --enable_batching" in text


# --- Kubernetes manifests ---------------------------------------------------------------


def test_every_manifest_parses(manifests):
  assert sorted(manifests) == ["ConfigMap", "Deployment", "Kustomization", "Service"]


def test_deployment_image_ports_and_args(container, pod_spec):
  assert container["image"] == IMAGE
  ports = {p["name"]: p["containerPort"] for p in container["ports"]}
  assert ports == {"grpc": GRPC_PORT, "http": HTTP_PORT}
  args = _args(container)
  assert args["--model_config_file"] == f"{CONFIG_MOUNT}/models.config"
  assert args["--model_config_file_poll_wait_seconds"] == "60"
  assert args["--file_system_poll_wait_seconds"] == "30"
  # The rank signature cannot go through TF Serving's batching.
  assert "--enable_batching" not in args
  assert "--batching_parameters_file" not in args


def test_deployment_probes(container):
  readiness = container["readinessProbe"]["httpGet"]
  assert readiness["path"] == f"/v1/models/{configs.MODEL_NAME}"
  assert readiness["port"] == HTTP_PORT
  assert container["livenessProbe"]["tcpSocket"]["port"] == GRPC_PORT
  # The gRPC port opens only after the first load: give it time.
  assert container["startupProbe"]["tcpSocket"]["port"] == GRPC_PORT


def test_deployment_resources(container):
  resources = container["resources"]
  for section in ("requests", "limits"):
    assert set(resources[section]) == {"cpu", "memory"}, section


def test_deployment_mounts_models_read_only_from_the_pvc(container, pod_spec):
  mount = _mount(container, "models")
  assert mount["mountPath"] == MODELS_MOUNT
  assert mount["readOnly"] is True
  claim = _volume(pod_spec, "models")["persistentVolumeClaim"]
  assert claim["claimName"] == MODELS_PVC
  assert claim["readOnly"] is True


def test_deployment_mounts_the_configmap_at_config(container, pod_spec, manifests):
  volume_name = _config_volume_name(pod_spec, container)
  mount = _mount(container, volume_name)
  # A subPath mount would never see ConfigMap updates, which the config poll needs.
  assert "subPath" not in mount
  config_map = _one(manifests, "ConfigMap")
  assert _volume(pod_spec, volume_name)["configMap"]["name"] == \
      config_map["metadata"]["name"]
  config_file = _args(container)["--model_config_file"]
  assert os.path.dirname(config_file) == CONFIG_MOUNT
  assert os.path.basename(config_file) in config_map["data"]


def test_models_config_base_path_is_under_the_models_mount(model_server_config):
  base_path = model_server_config.model_config_list.config[0].base_path
  assert base_path.startswith(MODELS_MOUNT + "/")


def test_service_exposes_grpc_and_http(manifests, pod_spec, container):
  service = _one(manifests, "Service")
  spec = service["spec"]
  assert spec.get("type", "ClusterIP") == "ClusterIP"
  labels = _one(manifests, "Deployment")["spec"]["template"]["metadata"]["labels"]
  assert spec["selector"].items() <= labels.items()
  container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
  ports = {}
  for port in spec["ports"]:
    target = port.get("targetPort", port["port"])
    ports[port["name"]] = (port["port"], container_ports.get(target, target))
  assert ports == {"grpc": (GRPC_PORT, GRPC_PORT), "http": (HTTP_PORT, HTTP_PORT)}


def test_configmap_files_equal_deploy_tfserving_byte_for_byte(manifests):
  data = _one(manifests, "ConfigMap")["data"]
  files = sorted(os.listdir(TFSERVING_DIR))
  assert sorted(data) == files
  for name in files:
    with open(os.path.join(TFSERVING_DIR, name), "rb") as f:
      assert data[name].encode("utf-8") == f.read(), (
          f"deploy/kubernetes/configmap.yaml's {name} differs from "
          f"deploy/tfserving/{name}")


def test_kustomization_lists_every_resource(manifests):
  kustomization = _one(manifests, "Kustomization")
  resources = sorted(kustomization["resources"])
  on_disk = sorted(n for n in os.listdir(KUBERNETES_DIR)
                   if n.endswith((".yaml", ".yml")) and n != "kustomization.yaml")
  assert resources == on_disk == ["configmap.yaml", "deployment.yaml", "service.yaml"]


# --- docs/serving.md --------------------------------------------------------------------


def test_serving_doc_mounts_where_the_pusher_pushes():
  doc = _read(SERVING_DOC)
  config = configs.PipelineConfig(root="runs/local", data_root="unused",
                                  mapping_path="unused")
  model_target = f"{MODELS_MOUNT}/{configs.MODEL_NAME}"
  mounts = re.findall(r"source=\$PWD/(\S+?),target=(\S+)", doc)
  model_sources = [source for source, target in mounts if target == model_target]
  assert model_sources, f"no docker --mount to {model_target} in docs/serving.md"
  for source in model_sources:
    assert source == config.serving_model_dir == "runs/local/serving/duia"
  assert IMAGE in doc
  assert "kubectl apply -k deploy/kubernetes" in doc


def test_serving_doc_rest_rank_request_matches_the_signature():
  doc = _read(SERVING_DOC)
  bodies = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", doc, re.S)]
  rank = [b for b in bodies if b.get("signature_name") == features.SERVING_RAW_SIGNATURE]
  assert len(rank) == 1, "expected one REST request body for the rank signature"
  inputs = rank[0]["inputs"]
  assert sorted(inputs) == sorted(features.RAW_FEATURE_KEYS)
  user_level = set(features.USER_SCALAR_STRING + features.USER_SEQUENCE_STRING
                   + features.USER_SCALAR_INT + features.USER_SEQUENCE_INT
                   + [features.TIMESTAMP])
  num_candidates = len(inputs[features.ITEM_ID])
  assert num_candidates > 1
  for key, value in inputs.items():
    assert len(value) == (1 if key in user_level else num_candidates), key
    if key in features.STRING_SEQUENCES:  # [rows, L], rectangular
      assert len({len(row) for row in value}) == 1, key
      assert all(isinstance(v, str) for row in value for v in row), key
    elif key in features.STRING_SCALARS:
      assert all(isinstance(v, str) for v in value), key
    elif key in features.INT_SCALARS:
      assert all(isinstance(v, int) for v in value), key
    elif key in features.INT_SEQUENCES:  # [rows, L], rectangular
      assert len({len(row) for row in value}) == 1, key
      assert all(isinstance(v, int) for row in value for v in row), key
    else:
      assert key in features.FLOAT_SCALARS
      assert all(isinstance(v, float) for v in value), key

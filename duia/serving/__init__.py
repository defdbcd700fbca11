"""Serving over TF Serving's gRPC and REST protocols (docs/design.md §7).

There is no `tensorflow_model_server` binary on this stack, so the project ships
its own server that speaks the same protocol; the client here works against
either, and the pushed model deploys on TF Serving unchanged (docs/serving.md).

Modules, request path first:
  server: gRPC PredictionService and ModelService servicers, `ModelServer`,
    `start_server`, `serve` and the command line.
  rest: TF Serving's REST API on a second port (HTTP server, status codes, load shedding).
  rest_routes: which model, version and action a REST path asks for.
  rest_json: TF Serving's REST JSON formats <-> its protos.
  backend: the protocol-neutral API calls (Predict, Classify, Regress,
    GetModelMetadata, GetModelStatus) on TF Serving's protos.
  signature_io: request checking against a signature; running it.
  batching: merging concurrent requests into one model call.
  errors: `RequestError`, the status code a failure is answered with.
  model_store: which versions are served: loading, warmup, atomic swap, polling.
  model_loader: versions on disk in TF Serving's layout; loading one.
  version_policy: latest N or specific versions.
  warmup: TF Serving's `assets.extra/tf_serving_warmup_requests` file: built
    from eval examples, written at export, read and replayed at load.
  client: `RankingClient` (the raw-tensor `rank` signature) and
    `predict_examples` (the serialized-tf.Example `serving_default` signature).
  predict_requests: PredictRequests built from feature dicts, values checked.
  tls: TLS credentials for the server and clients.

The package imports nothing eagerly: every module pulls in TensorFlow and
gRPC, so callers import the module they need.
"""

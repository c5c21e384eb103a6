"""The admin API's protocol-neutral core: a facade over the control plane with JSON in and out,
used by both front ends (REST ``/switchyard/v1/...`` and gRPC ``switchyard.v1.Admin``)."""

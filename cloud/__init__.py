"""telehub cloud: the gRPC gateway and the per-tenant telemetry stores."""

"""Size limits of BuildKit's gRPC endpoints, shared by the Control channel and the session."""

# buildkitd and its Go client send and receive gRPC messages of up to 16 MiB.
MESSAGE_LIMIT = 16 << 20

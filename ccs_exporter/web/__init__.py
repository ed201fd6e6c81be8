"""The HTTP server: sockets, endpoints, authentication, TLS and the exporter-toolkit web config."""

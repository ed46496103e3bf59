"""The engine's HTTP tests, against a real HTTPS server on loopback."""

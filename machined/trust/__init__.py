"""TLS trust for the HTTPS API: the daemon's certificate, client certificates, join tokens."""

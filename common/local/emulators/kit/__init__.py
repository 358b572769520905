"""What both emulators share: clock, rpc status codes, time conversion, backoff and HTTP dispatch with OIDC."""

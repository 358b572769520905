"""Operating Tributary: the CLI, dead letters, the deploy plan and staging."""

"""One module per CLI command; the registry is agent.cli.COMMANDS."""

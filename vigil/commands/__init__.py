"""One module per `vigil` sub-command group; each owns its typer app."""

"""One module per benchmark; each defines `NAME`, a one-line `DESCRIPTION` and `run(args) -> list[str]`."""

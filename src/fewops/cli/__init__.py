from fewops.cli.main import main

__all__ = ["main"]

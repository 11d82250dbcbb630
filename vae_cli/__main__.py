from .cli.train import script

script()

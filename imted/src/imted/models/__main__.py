from vlcore.cli import models_main, run_cli

from imted.models import REGISTRY

run_cli(lambda argv: models_main(REGISTRY, argv))

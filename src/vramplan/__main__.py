from vramplan.cli import run

run()

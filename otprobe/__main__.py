"""python -m otprobe"""

from otprobe.cli import app

app()

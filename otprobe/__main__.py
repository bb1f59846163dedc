"""python -m otprobe"""

from otprobe.cli import app

app(prog_name="otprobe")

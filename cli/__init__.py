"""mc: the command-line client of machined. It speaks JSON over HTTP to the daemon and nothing
else."""

__version__ = "0.1.0"

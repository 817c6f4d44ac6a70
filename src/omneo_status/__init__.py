"""omneo-status: add or remove Omneo CX profile statuses in bulk, safely."""

__version__ = "0.1.0"

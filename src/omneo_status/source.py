"""TEMPORARY SHIM (core helper replaces it): the prepared input of a run."""

from omneo_status.job import PreparedInput, prepared_input

__all__ = ["PreparedInput", "prepared_input"]

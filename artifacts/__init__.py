"""Trained weights kept by URL (a folder, ``s3://``, ``gs://``): written by workers, pruned by the server."""

from artifacts.store import (
           MANIFEST,
           WEIGHTS,
           ArtifactError,
           ArtifactStore,
           delete_artifact,
           read_artifact,
           write_artifact,
)

__all__ = ["MANIFEST", "WEIGHTS", "ArtifactError", "ArtifactStore", "delete_artifact", "read_artifact",
           "write_artifact"]

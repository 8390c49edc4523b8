"""The artifact store: one folder per trained child under a base URL, through fsspec, checked by sha256.

A child's folder holds ``weights.msgpack`` (its Flax variables, ``flax.serialization`` bytes) and
``manifest.json`` (what trained it and what it scored, the library versions, the weights' sha256 and
size). The database keeps the URI, sha256 and size, never the bytes. Reading checks both, so a truncated
or overwritten file is refused with one line instead of loading wrong weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Mapping
from typing import Any

import fsspec  # type: ignore[import-untyped]

from domain.errors import AmoebaError
from domain.values import Artifact

WEIGHTS = "weights.msgpack"
MANIFEST = "manifest.json"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
log = logging.getLogger(__name__)


class ArtifactError(AmoebaError):
    """The store cannot be reached or written, or an artifact is missing or damaged."""


def _fs(url: str) -> tuple[Any, str]:
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        # e.g. s3:// without s3fs installed, gs:// without gcsfs
        raise ArtifactError(f"cannot use the artifact store {url}: {exc}") from None
    return fs, path


class ArtifactStore:
    """The base URL children's folders live under (``./amoeba-artifacts``, ``s3://bucket/prefix``, ...)."""

    def __init__(self, base: str) -> None:
        if not isinstance(base, str) or not base.strip() or "\x00" in base:
            raise ArtifactError("an artifact store needs a folder path or a URL")
        self.base = base.rstrip("/")
        _fs(self.base)  # an unknown protocol or a missing fsspec backend is a start-up error

    def uri_for(self, experiment: str, proposal_seq: int, fingerprint: str) -> str:
        """Where proposal ``proposal_seq`` of ``experiment`` keeps its weights (deterministic, one per child)."""
        return f"{self.base}/{_SAFE.sub('_', experiment)}/{proposal_seq:07d}-{_SAFE.sub('_', fingerprint)}"

    def owns(self, uri: str) -> bool:
        return uri.startswith(self.base + "/")

    def discard(self, uris: list[str]) -> int:
        """Delete the folders of ``uris`` that live under this store (retention); how many were removed.

        A folder that cannot be removed now is logged and left (an orphan costs space, never data); a URI
        outside the store is never touched, whatever a database row says."""
        removed = 0
        for uri in uris:
            if not self.owns(uri):
                log.warning("not deleting %s: it is not under the artifact store %s", uri[:200], self.base)
                continue
            try:
                delete_artifact(uri)
                removed += 1
            except Exception as exc:  # an unreachable store must not fail the report that already committed
                log.warning("could not delete artifact %s: %s", uri[:200], exc)
        return removed

    def usage(self, experiment: str | None = None) -> tuple[int, int]:
        """(children's folders with weights, bytes of weights) under the store, or one experiment's."""
        fs, path = _fs(self.base if experiment is None else f"{self.base}/{_SAFE.sub('_', experiment)}")
        try:
            found = [p for p in fs.find(path) if p.endswith("/" + WEIGHTS)]
        except FileNotFoundError:
            return 0, 0
        return len(found), sum(int(fs.size(p)) for p in found)


#: Distributions whose versions a manifest records (what produced the bytes; read without importing them).
VERSIONED = ("amoeba-nas", "jax", "jaxlib", "flax", "optax", "numpy", "fsspec")


def library_versions() -> dict[str, str]:
    """The installed versions of VERSIONED (those present), for manifests."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in VERSIONED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def write_artifact(uri: str, weights: bytes, manifest: Mapping[str, Any]) -> Artifact:
    """Write a child's weights and manifest under ``uri``; the Artifact to report. ArtifactError when the
    store cannot be written (the evaluation then fails with the store's error: no result without weights)."""
    digest = hashlib.sha256(weights).hexdigest()
    doc = {**manifest, "weights": WEIGHTS, "sha256": digest, "bytes": len(weights)}
    fs, path = _fs(uri)
    try:
        fs.makedirs(path, exist_ok=True)
        # The weights first under a temporary name, then renamed: a reader never sees half a file.
        tmp = f"{path}/.{WEIGHTS}.partial"
        with fs.open(tmp, "wb") as fh:
            fh.write(weights)
        fs.mv(tmp, f"{path}/{WEIGHTS}")
        with fs.open(f"{path}/{MANIFEST}", "w") as fh:
            fh.write(json.dumps(doc, sort_keys=True, indent=2) + "\n")
    except (OSError, PermissionError) as exc:
        raise ArtifactError(f"cannot write the artifact store at {uri}: {exc}") from None
    except Exception as exc:  # botocore/gcsfs errors are not OSErrors
        raise ArtifactError(f"cannot write the artifact store at {uri}: {type(exc).__name__}: {exc}") from None
    return Artifact(uri, digest, len(weights))


def read_artifact(artifact: Artifact) -> bytes:
    """The weights of ``artifact``, after checking their size and sha256; ArtifactError (one line) when they
    are missing, truncated or overwritten: wrong weights are never loaded."""
    fs, path = _fs(artifact.uri)
    try:
        with fs.open(f"{path}/{WEIGHTS}", "rb") as fh:
            data: bytes = fh.read()
    except FileNotFoundError:
        raise ArtifactError(f"artifact {artifact.uri} is missing (no {WEIGHTS})") from None
    except Exception as exc:
        raise ArtifactError(f"cannot read artifact {artifact.uri}: {type(exc).__name__}: {exc}") from None
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != artifact.bytes or digest != artifact.sha256:
        raise ArtifactError(f"artifact {artifact.uri} is missing or damaged: {len(data):,} bytes with sha256 "
                            f"{digest[:12]}..., the database says {artifact.bytes:,} bytes with {artifact.sha256[:12]}...")
    return data


def read_manifest(artifact: Artifact) -> dict[str, Any]:
    """The manifest of ``artifact`` (what trained it); ArtifactError when it is missing or not JSON."""
    fs, path = _fs(artifact.uri)
    try:
        with fs.open(f"{path}/{MANIFEST}", "r") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        raise ArtifactError(f"artifact {artifact.uri} is missing (no {MANIFEST})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"artifact {artifact.uri} has a damaged {MANIFEST}: {exc}") from None
    except Exception as exc:
        raise ArtifactError(f"cannot read artifact {artifact.uri}: {type(exc).__name__}: {exc}") from None
    if not isinstance(doc, dict):
        raise ArtifactError(f"artifact {artifact.uri} has a damaged {MANIFEST}: not a JSON object")
    return doc


def delete_artifact(uri: str) -> None:
    """Remove a child's folder (no error when it is gone already)."""
    fs, path = _fs(uri)
    with contextlib.suppress(FileNotFoundError):
        fs.rm(path, recursive=True)

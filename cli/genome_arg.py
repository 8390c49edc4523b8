"""The ``--genome`` argument of the commands that take one: a named genome, a genome JSON file, a genome
JSON string, or a space's text form (an NB201 arch string)."""

from __future__ import annotations

from pathlib import Path

from cli.errors import UserError
from genome.base import Genome

#: Genome files are small; a bigger file is certainly not one (and must not be read whole).
MAX_GENOME_FILE_BYTES = 1_000_000


def load_genome(value: str) -> Genome:
    """The genome ``value`` names; a UserError (one line) for anything else."""
    import spaces

    if value in spaces.named_genomes():
        return spaces.named_genome(value)
    path = Path(value)
    if len(value) < 4096 and path.is_file():
        if path.stat().st_size > MAX_GENOME_FILE_BYTES:
            raise UserError(f"genome file {value} is larger than {MAX_GENOME_FILE_BYTES:,} bytes")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read genome file {value}: {exc}") from None
        return spaces.parse_genome(text.strip())
    text = value.strip()
    if text.startswith("{"):
        return spaces.parse_genome(text)
    try:
        return spaces.parse_genome(text)
    except spaces.SpaceError:
        raise
    except Exception:
        shown = value if len(value) <= 80 else value[:80] + "..."
        raise UserError(f"--genome {shown!r} is neither a named genome ({', '.join(spaces.named_genomes())}), "
                        "a genome JSON file or string, nor the text form of a space's genome") from None

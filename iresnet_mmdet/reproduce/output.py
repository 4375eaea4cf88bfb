"""What a run writes: its files, atomically (:mod:`iresnet_mmdet.atomic`: a run killed while
writing leaves the old file or the new one, never half of one), and its lines on the console."""
import json

from iresnet_mmdet.atomic import write_atomic


def say(text: str = '') -> None:
    """Print a line of the run's report at once (its steps' output goes to log files)."""
    print(text, flush=True)


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (missing folders are made)."""

    def write(tmp):
        with open(tmp, 'w') as f:
            f.write(text)

    write_atomic(path, write)


def write_json(path: str, record) -> None:
    """Write ``record`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(record, indent=2) + '\n')

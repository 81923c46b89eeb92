"""Where the project's own files are: one import root, the repository root."""
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

"""Scripts the peers' benchmark runs with the side environment's Python (.venv-peers): each imports only its
peer's library and the standard library (never fundx), prints one JSON line, and is run as a file."""

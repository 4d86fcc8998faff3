"""The delivery side: staged windows to MinIO as verified `.tar.gz` archives, exactly once
(delivery), and nothing left undelivered unnoticed (redrive)."""

"""Tests against real stand-in servers (SeaweedFS for MinIO) and moto in process."""

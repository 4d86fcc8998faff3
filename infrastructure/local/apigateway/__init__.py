"""Stands in for API Gateway's HTTP API in front of the intake function: real HTTP on loopback,
turned into payload format 2.0 events for the same handler code (`server`).
"""

"""Stress tests that run as programs: training killed at random moments (kill.py)."""

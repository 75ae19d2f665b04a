"""Placeholder; filled in by the function library."""

"""Shared test code (no fixtures, no tests): workspaces, DVC projects, archives, servers, presets."""

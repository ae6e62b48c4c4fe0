"""Sketchy front-camera crops, 128×128, split by episode (GENESIS-V2's real-world data)."""

"""Coloured Multi-dSprites (GENESIS appendix A)."""

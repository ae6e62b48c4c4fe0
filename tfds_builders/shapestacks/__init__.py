"""ShapeStacks renders with instance masks and stability labels (GENESIS appendix A)."""

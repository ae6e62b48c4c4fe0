"""GQN rooms_ring_camera frames (GENESIS appendix A)."""
